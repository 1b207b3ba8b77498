//! What a suite is, and how one is read from disk.
//!
//! A suite is data: tasks (id, tags, split, input, optional expected data and
//! label, limits), evaluation stages with gates, and the trusted [`Check`]
//! that turns an agent's output into a score. [`load_suite`] detects the kind
//! of a directory and builds a [`Suite`]; every malformed input becomes a
//! one-line [`SuiteError`] naming the file and the field.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{datasets, openevolve};

/// Which part of a suite a task belongs to. Evolution uses `train` (and
/// `validation` to confirm); `holdout` is never used for evolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Validation,
    Holdout,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Holdout];
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Holdout => "holdout",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "train" => Ok(Split::Train),
            "validation" | "valid" | "val" => Ok(Split::Validation),
            "holdout" | "test" => Ok(Split::Holdout),
            other => Err(format!(
                "unknown split `{other}` (expected train, validation or holdout)"
            )),
        }
    }
}

/// The kinds of suite [`load_suite`] understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuiteKind {
    /// `suite.toml` tasks scored by a trusted scorer command.
    Tasks,
    /// pytest or `cargo test` inside the sandbox, parsed per test.
    UnitTests,
    /// The time and memory of a workload are the score.
    Performance,
    /// An OpenEvolve / ShinkaEvolve directory with `evaluator.py`.
    OpenEvolve,
    /// Exercism / Aider Polyglot exercises (Python).
    Exercism,
    /// HumanEval problems (JSONL).
    HumanEval,
    /// SWE-bench instances (JSONL); running them needs the Docker backend.
    SweBench,
}

impl SuiteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SuiteKind::Tasks => "tasks",
            SuiteKind::UnitTests => "unit_tests",
            SuiteKind::Performance => "performance",
            SuiteKind::OpenEvolve => "openevolve",
            SuiteKind::Exercism => "exercism",
            SuiteKind::HumanEval => "humaneval",
            SuiteKind::SweBench => "swebench",
        }
    }
}

/// A task's input: a file on the host (absolute) or inline bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskInput {
    File(PathBuf),
    Inline(Vec<u8>),
}

impl TaskInput {
    pub fn bytes(&self) -> std::io::Result<Vec<u8>> {
        match self {
            TaskInput::File(p) => std::fs::read(p),
            TaskInput::Inline(b) => Ok(b.clone()),
        }
    }
}

/// Per-task sandbox limits (resolved: suite defaults, then task overrides).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskLimits {
    pub timeout: Duration,
    pub memory_bytes: u64,
    pub cpus: f64,
    pub pids: u64,
    pub output_bytes: u64,
}

impl Default for TaskLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            memory_bytes: 512 * 1024 * 1024,
            cpus: 1.0,
            pids: 64,
            output_bytes: 1024 * 1024,
        }
    }
}

impl TaskLimits {
    pub fn to_sandbox(&self) -> dgm_sandbox::Limits {
        dgm_sandbox::Limits {
            memory_bytes: self.memory_bytes,
            cpus: self.cpus,
            pids: self.pids,
            timeout: self.timeout,
            output_bytes: self.output_bytes,
            ..dgm_sandbox::Limits::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: String,
    pub tags: Vec<String>,
    pub split: Split,
    pub input: TaskInput,
    /// Expected data handed to the trusted check (never to the agent).
    pub expected: Option<serde_json::Value>,
    /// Ground-truth class for accuracy / precision / recall.
    pub label: Option<bool>,
    pub limits: TaskLimits,
}

/// The condition to go on to the next stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub min_score: Option<f64>,
    pub min_pass_rate: Option<f64>,
}

/// A slice of a split: the first `max_tasks` tasks (optionally only those with
/// one of `tags`), then a gate before the next stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub name: String,
    pub max_tasks: Option<usize>,
    pub tags: Vec<String>,
    pub gate: Option<Gate>,
}

impl Stage {
    /// Every task of the split, no gate.
    pub fn all() -> Self {
        Stage {
            name: "all".into(),
            max_tasks: None,
            tags: Vec::new(),
            gate: None,
        }
    }

    /// The tasks of `suite` this stage runs on `split`, in suite order.
    pub fn select<'a>(&self, suite: &'a Suite, split: Split) -> Vec<&'a Task> {
        let it = suite
            .tasks
            .iter()
            .filter(|t| t.split == split)
            .filter(|t| self.tags.is_empty() || t.tags.iter().any(|g| self.tags.contains(g)));
        match self.max_tasks {
            Some(n) => it.take(n).collect(),
            None => it.collect(),
        }
    }
}

/// A trusted scorer command, run OUTSIDE the sandbox with the suite directory
/// as working directory.
#[derive(Debug, Clone, PartialEq)]
pub struct ScorerCommand {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestFramework {
    Pytest,
    Cargo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Wall,
    Cpu,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PerformanceCheck {
    pub measure: Measure,
    /// At or under this time the time component scores 1.0; above it,
    /// `target / actual`.
    pub target_ms: f64,
    /// Optional memory target, scored the same way and averaged in.
    pub memory_target_bytes: Option<u64>,
    /// Optional correctness scorer: a wrong answer scores 0 however fast.
    pub correctness: Option<ScorerCommand>,
}

/// Programs that are checked by running untrusted code a second time, in the
/// sandbox (the agent's answer is code).
#[derive(Debug, Clone, PartialEq)]
pub enum Verifier {
    /// The answer completes `prompt`; `check(entry_point)` must not raise.
    HumanEval,
    /// The answer is the solution file(s); the exercise's tests must pass.
    ExercismPython {
        exercise_dir: PathBuf,
        solution_files: Vec<String>,
        test_files: Vec<String>,
    },
}

/// How an agent's run becomes a score. Only this decides scores.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Trusted scorer command outside the sandbox, prints JSON metrics.
    Command(ScorerCommand),
    /// The in-sandbox test run printed JUnit XML (pytest) or libtest text
    /// (cargo) on stdout.
    UnitTests(TestFramework),
    /// Time / memory of the run.
    Performance(PerformanceCheck),
    /// The trusted harness printed the evaluator's dict (see [`openevolve`]).
    OpenEvolve(openevolve::OpenEvolveCheck),
    /// A second sandboxed run checks the agent's answer.
    Verify,
}

/// A loaded suite.
#[derive(Debug, Clone)]
pub struct Suite {
    pub name: String,
    pub kind: SuiteKind,
    /// The suite directory (or dataset file) it was loaded from.
    pub dir: PathBuf,
    pub description: String,
    pub tasks: Vec<Task>,
    /// At least one stage; the last one usually runs every task.
    pub stages: Vec<Stage>,
    pub check: Check,
    /// A task with no explicit `passed` from the check passes at this score.
    pub pass_threshold: f64,
    /// Replaces the agent's own command (unit tests, OpenEvolve harness).
    pub command: Option<Vec<String>>,
    /// Extra environment for the sandboxed run.
    pub env: Vec<(String, String)>,
    /// Trusted host directories mounted read-only into the sandbox.
    pub mounts: Vec<dgm_sandbox::Mount>,
    /// Per-task second-run checker (with [`Check::Verify`]).
    pub verifiers: Vec<(String, Verifier)>,
    /// Set for suites that can only run on the Docker backend (SWE-bench).
    pub requires_docker: Option<String>,
}

impl Suite {
    pub fn verifier(&self, task_id: &str) -> Option<&Verifier> {
        self.verifiers
            .iter()
            .find(|(id, _)| id == task_id)
            .map(|(_, v)| v)
    }

    pub fn count(&self, split: Split) -> usize {
        self.tasks.iter().filter(|t| t.split == split).count()
    }

    /// The stage called `name`, or with that 1-based number.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        if let Ok(n) = name.parse::<usize>() {
            return n.checked_sub(1).and_then(|i| self.stages.get(i));
        }
        self.stages.iter().find(|s| s.name == name)
    }
}

/// A malformed suite: always one line, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("{file}: {field}: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{0}: not a suite (expected suite.toml, evaluator.py, an Exercism .meta/config.json layout, or a HumanEval / SWE-bench .jsonl)"
    )]
    NotASuite(String),
}

impl SuiteError {
    pub(crate) fn invalid(
        file: &Path,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        SuiteError::Invalid {
            file: file.display().to_string(),
            field: field.into(),
            message: one_line(&message.into()),
        }
    }
    pub(crate) fn io(file: &Path, source: std::io::Error) -> Self {
        SuiteError::Io {
            file: file.display().to_string(),
            source,
        }
    }
}

pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------
// suite.toml

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    suite: RawHeader,
    scorer: Option<RawScorer>,
    limits: Option<RawLimits>,
    #[serde(default)]
    stages: Vec<RawStage>,
    #[serde(default)]
    tasks: Vec<RawTask>,
    unit_tests: Option<RawUnitTests>,
    performance: Option<RawPerformance>,
    openevolve: Option<openevolve::RawOpenEvolve>,
    dataset: Option<RawDataset>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    description: String,
    pass_threshold: Option<f64>,
    tasks_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScorer {
    command: Vec<String>,
    timeout_secs: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    timeout_secs: Option<f64>,
    memory_mb: Option<u64>,
    cpus: Option<f64>,
    pids: Option<u64>,
    output_kb: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: String,
    tasks: Option<usize>,
    #[serde(default)]
    tags: Vec<String>,
    min_score: Option<f64>,
    min_pass_rate: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    id: String,
    #[serde(default)]
    tags: Vec<String>,
    split: Option<String>,
    input: Option<serde_json::Value>,
    input_file: Option<String>,
    input_text: Option<String>,
    expected: Option<serde_json::Value>,
    expected_file: Option<String>,
    label: Option<bool>,
    timeout_secs: Option<f64>,
    memory_mb: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnitTests {
    framework: String,
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerformance {
    #[serde(default)]
    measure: Option<String>,
    target_ms: f64,
    memory_target_mb: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    path: String,
    limit: Option<usize>,
}

/// Where the suite directory is mounted inside the sandbox.
pub const SUITE_MOUNT: &str = "/dgm/suite";

/// Load a suite from `path`, detecting its kind:
/// `suite.toml` → as declared; `evaluator.py` → OpenEvolve; `.jsonl` /
/// `.jsonl.gz` file → HumanEval or SWE-bench by its fields; `.meta/config.json`
/// (one exercise, or `exercises/practice/*`, or `*/`) → Exercism.
pub fn load_suite(path: impl AsRef<Path>) -> Result<Suite, SuiteError> {
    let path = path.as_ref();
    let path = path.canonicalize().map_err(|e| SuiteError::io(path, e))?;
    if path.is_file() {
        return datasets::load_jsonl_file(&path, None);
    }
    let toml_path = path.join("suite.toml");
    if toml_path.is_file() {
        return load_suite_toml(&path, &toml_path);
    }
    if path.join("evaluator.py").is_file() {
        return openevolve::load(&path, None, TaskLimits::default());
    }
    if datasets::looks_like_exercism(&path) {
        return datasets::load_exercism(&path, None, TaskLimits::default());
    }
    Err(SuiteError::NotASuite(path.display().to_string()))
}

fn toml_error(file: &Path, text: &str, e: toml::de::Error) -> SuiteError {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let field = match line {
        Some(l) => format!(
            "line {l} `{}`",
            text.lines().nth(l - 1).unwrap_or("").trim()
        ),
        None => "document".to_string(),
    };
    SuiteError::invalid(file, field, e.message())
}

fn load_suite_toml(dir: &Path, file: &Path) -> Result<Suite, SuiteError> {
    let text = std::fs::read_to_string(file).map_err(|e| SuiteError::io(file, e))?;
    let raw: RawSuite = toml::from_str(&text).map_err(|e| toml_error(file, &text, e))?;
    let kind = match raw.suite.kind.as_deref().unwrap_or("tasks") {
        "tasks" => SuiteKind::Tasks,
        "unit_tests" => SuiteKind::UnitTests,
        "performance" => SuiteKind::Performance,
        "openevolve" => SuiteKind::OpenEvolve,
        "exercism" => SuiteKind::Exercism,
        "humaneval" => SuiteKind::HumanEval,
        "swebench" => SuiteKind::SweBench,
        other => {
            return Err(SuiteError::invalid(
                file,
                "suite.kind",
                format!(
                    "unknown kind `{other}` (expected tasks, unit_tests, performance, openevolve, exercism, humaneval, swebench)"
                ),
            ));
        }
    };
    let limits = resolve_limits(file, "limits", &TaskLimits::default(), raw.limits.as_ref())?;
    let stages = parse_stages(file, &raw.stages)?;

    // Kinds whose tasks come from elsewhere.
    let dataset_path = |raw: &RawSuite| -> Result<(PathBuf, Option<usize>), SuiteError> {
        let d = raw.dataset.as_ref().ok_or_else(|| {
            SuiteError::invalid(file, "dataset", "missing [dataset] table with `path`")
        })?;
        Ok((dir.join(&d.path), d.limit))
    };
    let mut suite = match kind {
        SuiteKind::OpenEvolve => openevolve::load(dir, raw.openevolve.as_ref(), limits.clone())?,
        SuiteKind::Exercism => {
            let (p, limit) = dataset_path(&raw)?;
            datasets::load_exercism(&p, limit, limits.clone())?
        }
        SuiteKind::HumanEval | SuiteKind::SweBench => {
            let (p, limit) = dataset_path(&raw)?;
            let s = datasets::load_jsonl_file(&p, limit)?;
            if s.kind != kind {
                return Err(SuiteError::invalid(
                    file,
                    "dataset.path",
                    format!(
                        "{} holds {} records, not {}",
                        p.display(),
                        s.kind.as_str(),
                        kind.as_str()
                    ),
                ));
            }
            s
        }
        SuiteKind::Tasks | SuiteKind::UnitTests | SuiteKind::Performance => {
            let mut tasks = Vec::new();
            let mut seen = BTreeSet::new();
            for (i, t) in raw.tasks.iter().enumerate() {
                let field = format!("tasks[{i}]");
                tasks.push(build_task(dir, file, &field, t, &limits)?);
            }
            if let Some(tf) = &raw.suite.tasks_file {
                let tpath = dir.join(tf);
                let body =
                    std::fs::read_to_string(&tpath).map_err(|e| SuiteError::io(&tpath, e))?;
                for (n, line) in body.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let field = format!("line {}", n + 1);
                    let t: RawTask = serde_json::from_str(line)
                        .map_err(|e| SuiteError::invalid(&tpath, &field, e.to_string()))?;
                    tasks.push(build_task(dir, &tpath, &field, &t, &limits)?);
                }
            }
            for t in &tasks {
                if !seen.insert(t.id.clone()) {
                    return Err(SuiteError::invalid(
                        file,
                        "tasks.id",
                        format!("duplicate task id `{}`", t.id),
                    ));
                }
            }
            let scorer = raw
                .scorer
                .as_ref()
                .map(|s| scorer_command(dir, file, s))
                .transpose()?;
            let (check, command, tasks) = match kind {
                SuiteKind::Tasks => {
                    let scorer = scorer.ok_or_else(|| {
                        SuiteError::invalid(
                            file,
                            "scorer.command",
                            "a task suite needs a trusted scorer command",
                        )
                    })?;
                    if tasks.is_empty() {
                        return Err(SuiteError::invalid(
                            file,
                            "tasks",
                            "no tasks (add [[tasks]] or suite.tasks_file)",
                        ));
                    }
                    (Check::Command(scorer), None, tasks)
                }
                SuiteKind::UnitTests => {
                    let ut = raw.unit_tests.as_ref().ok_or_else(|| {
                        SuiteError::invalid(
                            file,
                            "unit_tests",
                            "missing [unit_tests] table with `framework`",
                        )
                    })?;
                    let fw = match ut.framework.as_str() {
                        "pytest" => TestFramework::Pytest,
                        "cargo" => TestFramework::Cargo,
                        other => {
                            return Err(SuiteError::invalid(
                                file,
                                "unit_tests.framework",
                                format!("unknown framework `{other}` (expected pytest or cargo)"),
                            ));
                        }
                    };
                    let tasks = if tasks.is_empty() {
                        vec![Task {
                            id: "tests".into(),
                            tags: vec!["tests".into()],
                            split: Split::Train,
                            input: TaskInput::Inline(b"{}".to_vec()),
                            expected: None,
                            label: None,
                            limits: limits.clone(),
                        }]
                    } else {
                        tasks
                    };
                    (
                        Check::UnitTests(fw),
                        Some(unit_test_command(fw, &ut.args)),
                        tasks,
                    )
                }
                _ => {
                    let p = raw.performance.as_ref().ok_or_else(|| {
                        SuiteError::invalid(
                            file,
                            "performance",
                            "missing [performance] table with `target_ms`",
                        )
                    })?;
                    let measure = match p.measure.as_deref().unwrap_or("wall") {
                        "wall" => Measure::Wall,
                        "cpu" => Measure::Cpu,
                        other => {
                            return Err(SuiteError::invalid(
                                file,
                                "performance.measure",
                                format!("unknown measure `{other}` (expected wall or cpu)"),
                            ));
                        }
                    };
                    if !(p.target_ms.is_finite() && p.target_ms > 0.0) {
                        return Err(SuiteError::invalid(
                            file,
                            "performance.target_ms",
                            "must be a positive number",
                        ));
                    }
                    if tasks.is_empty() {
                        return Err(SuiteError::invalid(
                            file,
                            "tasks",
                            "no tasks (the workloads to time)",
                        ));
                    }
                    let check = PerformanceCheck {
                        measure,
                        target_ms: p.target_ms,
                        memory_target_bytes: p.memory_target_mb.map(|m| m * 1024 * 1024),
                        correctness: scorer,
                    };
                    (Check::Performance(check), None, tasks)
                }
            };
            let mounts = if kind == SuiteKind::UnitTests {
                vec![dgm_sandbox::Mount {
                    host: dir.to_path_buf(),
                    sandbox: PathBuf::from(SUITE_MOUNT),
                }]
            } else {
                Vec::new()
            };
            Suite {
                name: raw.suite.name.clone(),
                kind,
                dir: dir.to_path_buf(),
                description: raw.suite.description.clone(),
                tasks,
                stages: Vec::new(),
                check,
                pass_threshold: 1.0,
                command,
                env: if kind == SuiteKind::UnitTests {
                    vec![
                        ("PYTHONPATH".into(), "/dgm/agent".into()),
                        ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
                    ]
                } else {
                    Vec::new()
                },
                mounts,
                verifiers: Vec::new(),
                requires_docker: None,
            }
        }
    };
    suite.name = raw.suite.name.clone();
    if !raw.suite.description.is_empty() {
        suite.description = raw.suite.description.clone();
    }
    if let Some(th) = raw.suite.pass_threshold {
        if !(0.0..=1.0).contains(&th) {
            return Err(SuiteError::invalid(
                file,
                "suite.pass_threshold",
                "must be within 0..1",
            ));
        }
        suite.pass_threshold = th;
    }
    if !stages.is_empty() {
        suite.stages = stages;
    }
    if suite.stages.is_empty() {
        suite.stages = vec![Stage::all()];
    }
    Ok(suite)
}

fn parse_stages(file: &Path, raw: &[RawStage]) -> Result<Vec<Stage>, SuiteError> {
    let mut out = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        for (name, v) in [
            ("min_score", s.min_score),
            ("min_pass_rate", s.min_pass_rate),
        ] {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                return Err(SuiteError::invalid(
                    file,
                    format!("stages[{i}].{name}"),
                    "must be within 0..1",
                ));
            }
        }
        if s.tasks == Some(0) {
            return Err(SuiteError::invalid(
                file,
                format!("stages[{i}].tasks"),
                "must be at least 1",
            ));
        }
        let gate = (s.min_score.is_some() || s.min_pass_rate.is_some()).then_some(Gate {
            min_score: s.min_score,
            min_pass_rate: s.min_pass_rate,
        });
        out.push(Stage {
            name: s.name.clone(),
            max_tasks: s.tasks,
            tags: s.tags.clone(),
            gate,
        });
    }
    Ok(out)
}

fn scorer_command(dir: &Path, file: &Path, s: &RawScorer) -> Result<ScorerCommand, SuiteError> {
    if s.command.is_empty() {
        return Err(SuiteError::invalid(file, "scorer.command", "empty command"));
    }
    let timeout = secs(file, "scorer.timeout_secs", s.timeout_secs.unwrap_or(60.0))?;
    Ok(ScorerCommand {
        argv: s.command.clone(),
        cwd: dir.to_path_buf(),
        timeout,
    })
}

fn secs(file: &Path, field: &str, v: f64) -> Result<Duration, SuiteError> {
    if !(v.is_finite() && v > 0.0 && v < 1e7) {
        return Err(SuiteError::invalid(
            file,
            field,
            "must be a positive number of seconds",
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

pub(crate) fn resolve_limits(
    file: &Path,
    field: &str,
    base: &TaskLimits,
    raw: Option<&RawLimits>,
) -> Result<TaskLimits, SuiteError> {
    let mut l = base.clone();
    let Some(r) = raw else { return Ok(l) };
    if let Some(t) = r.timeout_secs {
        l.timeout = secs(file, &format!("{field}.timeout_secs"), t)?;
    }
    if let Some(m) = r.memory_mb {
        if m == 0 {
            return Err(SuiteError::invalid(
                file,
                format!("{field}.memory_mb"),
                "must be at least 1",
            ));
        }
        l.memory_bytes = m * 1024 * 1024;
    }
    if let Some(c) = r.cpus {
        if !(c.is_finite() && c > 0.0) {
            return Err(SuiteError::invalid(
                file,
                format!("{field}.cpus"),
                "must be positive",
            ));
        }
        l.cpus = c;
    }
    if let Some(p) = r.pids {
        l.pids = p.max(1);
    }
    if let Some(o) = r.output_kb {
        l.output_bytes = o.max(1) * 1024;
    }
    Ok(l)
}

fn build_task(
    dir: &Path,
    file: &Path,
    field: &str,
    t: &RawTask,
    limits: &TaskLimits,
) -> Result<Task, SuiteError> {
    if t.id.trim().is_empty() || t.id.contains(['/', '\\', '\0']) {
        return Err(SuiteError::invalid(
            file,
            format!("{field}.id"),
            "must be non-empty, without / or \\",
        ));
    }
    let split = match &t.split {
        None => Split::Train,
        Some(s) => s
            .parse()
            .map_err(|e: String| SuiteError::invalid(file, format!("{field}.split"), e))?,
    };
    let n_inputs = [
        t.input.is_some(),
        t.input_file.is_some(),
        t.input_text.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if n_inputs > 1 {
        return Err(SuiteError::invalid(
            file,
            format!("{field}.input"),
            "give only one of input, input_file, input_text",
        ));
    }
    let input = if let Some(v) = &t.input {
        TaskInput::Inline(serde_json::to_vec(v).unwrap_or_default())
    } else if let Some(f) = &t.input_file {
        let p = dir.join(f);
        if !p.is_file() {
            return Err(SuiteError::invalid(
                file,
                format!("{field}.input_file"),
                format!("{} does not exist", p.display()),
            ));
        }
        TaskInput::File(p)
    } else if let Some(s) = &t.input_text {
        TaskInput::Inline(s.clone().into_bytes())
    } else {
        TaskInput::Inline(b"{}".to_vec())
    };
    let expected = match (&t.expected, &t.expected_file) {
        (Some(_), Some(_)) => {
            return Err(SuiteError::invalid(
                file,
                format!("{field}.expected"),
                "give only one of expected, expected_file",
            ));
        }
        (Some(v), None) => Some(v.clone()),
        (None, Some(f)) => {
            let p = dir.join(f);
            let body = std::fs::read_to_string(&p).map_err(|e| SuiteError::io(&p, e))?;
            Some(serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)))
        }
        (None, None) => None,
    };
    let mut lim = limits.clone();
    if let Some(s) = t.timeout_secs {
        lim.timeout = secs(file, &format!("{field}.timeout_secs"), s)?;
    }
    if let Some(m) = t.memory_mb {
        if m == 0 {
            return Err(SuiteError::invalid(
                file,
                format!("{field}.memory_mb"),
                "must be at least 1",
            ));
        }
        lim.memory_bytes = m * 1024 * 1024;
    }
    Ok(Task {
        id: t.id.clone(),
        tags: t.tags.clone(),
        split,
        input,
        expected,
        label: t.label,
        limits: lim,
    })
}

/// The in-sandbox command of a unit-test suite. Tests live in the suite
/// (trusted, mounted at [`SUITE_MOUNT`]); the code under test is the agent
/// (mounted at `/dgm/agent`, put on `PYTHONPATH`). The report goes to
/// stdout; the test runner's own chatter goes to stderr.
fn unit_test_command(fw: TestFramework, args: &[String]) -> Vec<String> {
    let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    let script = match fw {
        TestFramework::Pytest => format!(
            "S=\"$PWD\"; cd {SUITE_MOUNT} && python3 -m pytest -q -p no:cacheprovider -o junit_family=xunit2 \
             --junitxml=\"$S/junit.xml\" {} >&2; code=$?; \
             if [ -f \"$S/junit.xml\" ]; then cat \"$S/junit.xml\"; fi; exit $code",
            quoted.join(" ")
        ),
        TestFramework::Cargo => format!(
            "S=\"$PWD\"; cp -r /dgm/agent \"$S/crate\" && cd \"$S/crate\" && \
             CARGO_TARGET_DIR=\"$S/target\" CARGO_HOME=\"${{CARGO_HOME:-$S/cargo-home}}\" cargo test --offline {} -- --test-threads=1 2>&1",
            quoted.join(" ")
        ),
    };
    vec!["sh".into(), "-c".into(), script]
}

pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
