//! What a benchmark run produced: one [`Trajectory`] per task execution and a
//! [`StageReport`] of metrics aggregated from them.
//!
//! Aggregation walks trajectories in suite order, so the metrics are the same
//! whatever the parallelism. Everything here is `Serialize + Deserialize`
//! because reports are embedded in events; full stdout/stderr bytes are not
//! serialized (they go to the blob store), only a short log excerpt is.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::suite::{Gate, Split, SuiteKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

/// Why a task failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCategory {
    /// Killed at the wall-clock limit.
    Timeout,
    /// Non-zero exit or killed by a signal.
    Crash,
    /// Ran, but the check says the answer is wrong.
    WrongAnswer,
    /// The answer could not be parsed by the check at all.
    InvalidOutput,
    /// The code did not parse / compile.
    SyntaxError,
    /// Killed at the memory limit.
    OutOfMemory,
    /// The trusted check printed NaN, infinity, an out-of-range or a
    /// non-numeric score, or no JSON at all.
    InvalidScore,
    /// The trusted check itself crashed or timed out.
    ScorerError,
    /// The sandbox could not start the job.
    SetupError,
}

impl ErrorCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Timeout => "timeout",
            ErrorCategory::Crash => "crash",
            ErrorCategory::WrongAnswer => "wrong_answer",
            ErrorCategory::InvalidOutput => "invalid_output",
            ErrorCategory::SyntaxError => "syntax_error",
            ErrorCategory::OutOfMemory => "out_of_memory",
            ErrorCategory::InvalidScore => "invalid_score",
            ErrorCategory::ScorerError => "scorer_error",
            ErrorCategory::SetupError => "setup_error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "timeout" => ErrorCategory::Timeout,
            "crash" => ErrorCategory::Crash,
            "wrong_answer" => ErrorCategory::WrongAnswer,
            "invalid_output" => ErrorCategory::InvalidOutput,
            "syntax_error" => ErrorCategory::SyntaxError,
            "out_of_memory" => ErrorCategory::OutOfMemory,
            "invalid_score" => ErrorCategory::InvalidScore,
            "scorer_error" => ErrorCategory::ScorerError,
            "setup_error" => ErrorCategory::SetupError,
            _ => return None,
        })
    }
}

/// One test of a unit-test run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestCaseResult {
    pub name: String,
    pub passed: bool,
    /// `Some` for skipped tests (they count neither way).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One execution of one version on one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    pub task_id: String,
    pub tags: Vec<String>,
    pub split: Split,
    pub outcome: Outcome,
    /// 0..1, from the trusted check only (0 when the run failed before it).
    pub score: f64,
    pub error_category: Option<ErrorCategory>,
    /// Short, human-readable reason for a failure.
    pub rationale: Option<String>,
    /// Tail of stderr and stdout, a few hundred bytes.
    pub log_excerpt: String,
    /// Extra numeric metrics the check reported for this task.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// The check's predicted class (for labelled tasks).
    pub prediction: Option<bool>,
    pub label: Option<bool>,
    #[serde(default)]
    pub tests: Vec<TestCaseResult>,
    pub exit_code: Option<i32>,
    pub wall_ms: f64,
    pub cpu_ms: f64,
    pub peak_memory_bytes: Option<u64>,
    pub tokens: Option<u64>,
    /// Full captured stdout (not serialized: it belongs in the blob store).
    #[serde(skip)]
    pub stdout: Vec<u8>,
    /// Full captured stderr (not serialized).
    #[serde(skip)]
    pub stderr: Vec<u8>,
}

impl Trajectory {
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Success
    }
}

/// Performance of a stage (not part of the deterministic metrics).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Perf {
    /// Wall time of the whole stage, including scoring.
    pub elapsed_ms: f64,
    /// Sum of per-task sandbox wall times.
    pub task_wall_ms: f64,
    pub mean_task_wall_ms: f64,
    pub task_cpu_ms: f64,
    pub max_peak_memory_bytes: Option<u64>,
    /// Sum over tasks that reported tokens; `None` if none did.
    pub tokens: Option<u64>,
    /// Time spent in trusted checks (scorer commands, verification runs).
    pub check_ms: f64,
    pub parallelism: usize,
}

/// The gate's verdict after a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub gate: Gate,
    pub passed: bool,
    pub reason: String,
}

/// One stage of one suite on one split, for one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    pub suite: String,
    pub kind: SuiteKind,
    pub stage: String,
    pub split: Split,
    pub tasks: usize,
    pub passed: usize,
    /// Mean task score, 0..1.
    pub score: f64,
    pub pass_rate: f64,
    /// Over labelled tasks: prediction == label; otherwise the pass rate.
    pub accuracy: f64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// `tag` → share of that tag's tasks that passed.
    pub tag_success_rates: BTreeMap<String, f64>,
    /// Mean of each extra metric over the tasks that reported it.
    pub extra: BTreeMap<String, f64>,
    /// Error category → count.
    pub errors: BTreeMap<String, usize>,
    pub gate: Option<GateResult>,
    pub perf: Perf,
    pub trajectories: Vec<Trajectory>,
}

impl StageReport {
    /// Aggregate trajectories (already in suite order).
    pub fn aggregate(
        suite: &str,
        kind: SuiteKind,
        stage: &str,
        split: Split,
        trajectories: Vec<Trajectory>,
        gate: Option<&Gate>,
        perf: Perf,
    ) -> Self {
        let n = trajectories.len();
        let passed = trajectories.iter().filter(|t| t.passed()).count();
        let mean = |sum: f64, count: usize| if count == 0 { 0.0 } else { sum / count as f64 };
        let score = mean(trajectories.iter().map(|t| t.score).sum(), n);
        let pass_rate = mean(passed as f64, n);

        let (mut tp, mut fp, mut fn_, mut correct, mut labelled) =
            (0usize, 0usize, 0usize, 0usize, 0usize);
        for t in &trajectories {
            let Some(label) = t.label else { continue };
            labelled += 1;
            // A missing prediction counts as the wrong class.
            let pred = t.prediction.unwrap_or(!label);
            if pred == label {
                correct += 1;
            }
            match (pred, label) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                _ => {}
            }
        }
        let accuracy = if labelled > 0 {
            mean(correct as f64, labelled)
        } else {
            pass_rate
        };
        let precision = (labelled > 0 && tp + fp > 0).then(|| tp as f64 / (tp + fp) as f64);
        let recall = (labelled > 0 && tp + fn_ > 0).then(|| tp as f64 / (tp + fn_) as f64);

        let mut tag_counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut extra_sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        let mut errors: BTreeMap<String, usize> = BTreeMap::new();
        for t in &trajectories {
            for tag in &t.tags {
                let e = tag_counts.entry(tag.clone()).or_default();
                e.1 += 1;
                if t.passed() {
                    e.0 += 1;
                }
            }
            for (k, v) in &t.metrics {
                let e = extra_sums.entry(k.clone()).or_default();
                e.0 += v;
                e.1 += 1;
            }
            if let Some(c) = t.error_category {
                *errors.entry(c.as_str().to_string()).or_default() += 1;
            }
        }
        let tag_success_rates = tag_counts
            .into_iter()
            .map(|(k, (p, c))| (k, mean(p as f64, c)))
            .collect();
        let extra = extra_sums
            .into_iter()
            .map(|(k, (s, c))| (k, mean(s, c)))
            .collect();
        let gate = gate.map(|g| evaluate_gate(g, score, pass_rate));
        Self {
            suite: suite.to_string(),
            kind,
            stage: stage.to_string(),
            split,
            tasks: n,
            passed,
            score,
            pass_rate,
            accuracy,
            precision,
            recall,
            tag_success_rates,
            extra,
            errors,
            gate,
            perf,
            trajectories,
        }
    }

    /// Whether a following stage may run.
    pub fn gate_passed(&self) -> bool {
        self.gate.as_ref().is_none_or(|g| g.passed)
    }

    /// The deterministic metrics, flat: `score`, `pass_rate`, `accuracy`,
    /// `precision`, `recall` (when defined), `<tag>_success_rate`, the extra
    /// metrics, and `errors_<category>`. Equal for serial and parallel runs.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        m.insert("score".into(), self.score);
        m.insert("pass_rate".into(), self.pass_rate);
        m.insert("accuracy".into(), self.accuracy);
        m.insert("tasks".into(), self.tasks as f64);
        m.insert("passed".into(), self.passed as f64);
        if let Some(p) = self.precision {
            m.insert("precision".into(), p);
        }
        if let Some(r) = self.recall {
            m.insert("recall".into(), r);
        }
        for (tag, r) in &self.tag_success_rates {
            m.insert(format!("{tag}_success_rate"), *r);
        }
        for (k, v) in &self.extra {
            m.entry(k.clone()).or_insert(*v);
        }
        for (k, v) in &self.errors {
            m.insert(format!("errors_{k}"), *v as f64);
        }
        m
    }

    /// Performance figures, flat (`wall_ms`, `cpu_ms`, `peak_memory_bytes`,
    /// `tokens`, ...). These vary from run to run.
    pub fn perf_metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        m.insert("elapsed_ms".into(), self.perf.elapsed_ms);
        m.insert("wall_ms".into(), self.perf.task_wall_ms);
        m.insert("mean_wall_ms".into(), self.perf.mean_task_wall_ms);
        m.insert("cpu_ms".into(), self.perf.task_cpu_ms);
        m.insert("check_ms".into(), self.perf.check_ms);
        if let Some(p) = self.perf.max_peak_memory_bytes {
            m.insert("peak_memory_bytes".into(), p as f64);
        }
        if let Some(t) = self.perf.tokens {
            m.insert("tokens".into(), t as f64);
        }
        m
    }
}

fn evaluate_gate(g: &Gate, score: f64, pass_rate: f64) -> GateResult {
    let mut fails = Vec::new();
    if let Some(min) = g.min_score
        && score < min
    {
        fails.push(format!("score {score:.4} < {min}"));
    }
    if let Some(min) = g.min_pass_rate
        && pass_rate < min
    {
        fails.push(format!("pass rate {pass_rate:.4} < {min}"));
    }
    GateResult {
        gate: g.clone(),
        passed: fails.is_empty(),
        reason: if fails.is_empty() {
            "gate passed".into()
        } else {
            format!("gate failed: {}", fails.join(", "))
        },
    }
}

/// Several stages run in order ([`crate::run_stages`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub stages: Vec<StageReport>,
    /// Every stage ran and every gate passed.
    pub completed: bool,
    /// Name of the stage whose gate stopped the run.
    pub stopped_at: Option<String>,
}

impl RunReport {
    /// The last stage that ran (the most complete picture).
    pub fn last(&self) -> Option<&StageReport> {
        self.stages.last()
    }
}

/// A plain-text table of a stage's metrics, for the CLI.
pub fn render_table(r: &StageReport) -> String {
    let mut rows: Vec<(String, String)> = vec![
        ("suite".into(), format!("{} ({})", r.suite, r.kind.as_str())),
        ("stage".into(), format!("{} on {}", r.stage, r.split)),
        (
            "tasks".into(),
            format!("{} passed of {}", r.passed, r.tasks),
        ),
        ("score".into(), format!("{:.4}", r.score)),
        ("pass_rate".into(), format!("{:.4}", r.pass_rate)),
        ("accuracy".into(), format!("{:.4}", r.accuracy)),
    ];
    if let Some(p) = r.precision {
        rows.push(("precision".into(), format!("{p:.4}")));
    }
    if let Some(p) = r.recall {
        rows.push(("recall".into(), format!("{p:.4}")));
    }
    for (tag, v) in &r.tag_success_rates {
        rows.push((format!("{tag}_success_rate"), format!("{v:.4}")));
    }
    for (k, v) in &r.extra {
        rows.push((k.clone(), format!("{v:.4}")));
    }
    for (k, v) in &r.errors {
        rows.push((format!("errors: {k}"), v.to_string()));
    }
    rows.push(("elapsed".into(), format!("{:.0} ms", r.perf.elapsed_ms)));
    rows.push((
        "task wall / cpu".into(),
        format!(
            "{:.0} ms / {:.0} ms",
            r.perf.task_wall_ms, r.perf.task_cpu_ms
        ),
    ));
    if let Some(m) = r.perf.max_peak_memory_bytes {
        rows.push((
            "peak memory".into(),
            format!("{:.1} MiB", m as f64 / 1048576.0),
        ));
    }
    if let Some(t) = r.perf.tokens {
        rows.push(("tokens".into(), t.to_string()));
    }
    if let Some(g) = &r.gate {
        rows.push(("gate".into(), g.reason.clone()));
    }
    let w = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{k:<w$}  {v}");
    }
    let failed: Vec<&Trajectory> = r.trajectories.iter().filter(|t| !t.passed()).collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "\nfailed tasks:");
        for t in failed.iter().take(20) {
            let cat = t.error_category.map(|c| c.as_str()).unwrap_or("failure");
            let why = t.rationale.as_deref().unwrap_or("");
            let _ = writeln!(
                out,
                "  {:<24} {:<14} {}",
                t.task_id,
                cat,
                truncate(why, 100)
            );
        }
        if failed.len() > 20 {
            let _ = writeln!(out, "  ... and {} more", failed.len() - 20);
        }
    }
    out
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}
