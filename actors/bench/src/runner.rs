//! The runner engine: one version on one stage of a suite, through a sandbox.
//!
//! Each task runs as one sandbox [`Job`]: the version's code mounted read-only
//! at `/dgm/agent` (the working directory), the task input read-only at
//! `/dgm/task/<file>` with its path in `$DGM_TASK_INPUT`; stdout is the
//! answer. The suite's trusted [`Check`] then scores it (a scorer command
//! outside the sandbox, a test report, a timing, or a second sandboxed
//! verification run). Tasks run concurrently up to `parallelism`; results are
//! put back in suite order before aggregation, so metrics never depend on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dgm_sandbox::{ExecResult, ExecStatus, Executor, Job, Mount, SandboxError};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::check::{self, CheckOutcome, human, tail};
use crate::datasets;
use crate::junit;
use crate::openevolve;
use crate::report::{ErrorCategory, Outcome, Perf, RunReport, StageReport, Trajectory};
use crate::suite::{Check, Measure, Split, Stage, Suite, Task, TaskInput, TestFramework};

/// Where the version's code is mounted inside the sandbox.
pub const AGENT_MOUNT: &str = "/dgm/agent";
/// Where the task's input directory is mounted inside the sandbox.
pub const TASK_MOUNT: &str = "/dgm/task";
/// Where a verification run finds the files to check.
pub const CHECK_MOUNT: &str = "/dgm/check";

/// How to run one version: its code tree and the command from its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Host directory holding the version's code (mounted read-only).
    pub code_dir: PathBuf,
    /// argv, run with the code dir as working directory.
    pub command: Vec<String>,
    /// Extra environment (never secrets: jobs are logged).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Knobs of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    /// Tasks in flight at once (the supervisor bounds real slots too).
    pub parallelism: usize,
    /// Whether the executor is the Docker backend (SWE-bench needs it).
    pub docker_available: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            parallelism: 2,
            docker_available: false,
        }
    }
}

/// Reported after each task finishes (in completion order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub stage: String,
    pub done: usize,
    pub total: usize,
    pub task_id: String,
    pub outcome: Outcome,
    pub score: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("stage `{stage}` selects no {split} task of suite `{suite}`")]
    NoTasks {
        suite: String,
        stage: String,
        split: Split,
    },
    #[error("suite `{suite}` has no stage `{stage}`")]
    NoStage { suite: String, stage: String },
    #[error("{0}")]
    NeedsDocker(String),
    #[error("the agent's run command is empty")]
    EmptyCommand,
    #[error("sandbox: {0}")]
    Sandbox(#[from] SandboxError),
    #[error("cannot prepare the run directory: {0}")]
    Io(#[from] std::io::Error),
}

/// Run one stage of `suite` on `split` for the version `agent`.
pub async fn run_stage<E: Executor>(
    suite: &Suite,
    stage: &Stage,
    split: Split,
    agent: &RunSpec,
    executor: &E,
    opts: &RunOptions,
    progress: &(dyn Fn(&Progress) + Send + Sync),
) -> Result<StageReport, RunError> {
    let span = tracing::info_span!(
        "benchmark.run",
        suite = %suite.name,
        kind = suite.kind.as_str(),
        stage = %stage.name,
        split = %split,
        agent = %agent.code_dir.display(),
    );
    run_stage_cached(
        suite,
        stage,
        split,
        agent,
        executor,
        opts,
        progress,
        &mut BTreeMap::new(),
    )
    .instrument(span)
    .await
}

/// Like [`run_stage`], but a task whose result is in `cache` (from an
/// earlier stage of the same version) is not run again, and every result is
/// added to it: stages that share tasks then run each task once.
#[allow(clippy::too_many_arguments)]
pub async fn run_stage_cached<E: Executor>(
    suite: &Suite,
    stage: &Stage,
    split: Split,
    agent: &RunSpec,
    executor: &E,
    opts: &RunOptions,
    progress: &(dyn Fn(&Progress) + Send + Sync),
    cache: &mut BTreeMap<String, Trajectory>,
) -> Result<StageReport, RunError> {
    if let Some(why) = &suite.requires_docker
        && !opts.docker_available
    {
        return Err(RunError::NeedsDocker(why.clone()));
    }
    if suite.command.is_none() && agent.command.is_empty() {
        return Err(RunError::EmptyCommand);
    }
    let tasks = stage.select(suite, split);
    if tasks.is_empty() {
        return Err(RunError::NoTasks {
            suite: suite.name.clone(),
            stage: stage.name.clone(),
            split,
        });
    }
    let started = Instant::now();
    let tmp = tempfile::Builder::new().prefix("dgm-bench-").tempdir()?;
    let code_dir = agent
        .code_dir
        .canonicalize()
        .unwrap_or_else(|_| agent.code_dir.clone());
    let ctx = Ctx {
        suite,
        agent,
        code_dir,
        executor,
        root: tmp.path().to_path_buf(),
    };
    let total = tasks.len();
    let mut done = 0usize;
    let mut results: Vec<Option<(Trajectory, f64)>> = vec![None; total];
    let mut todo = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        match cache.get(&t.id) {
            Some(tr) => results[i] = Some((tr.clone(), 0.0)),
            None => todo.push((i, *t)),
        }
    }
    done += total - todo.len();
    let parallelism = opts.parallelism.max(1);
    let mut stream = futures_util::stream::iter(todo.into_iter().map(|(i, t)| {
        let ctx = &ctx;
        async move { (i, run_task(ctx, i, t).await) }
    }))
    .buffer_unordered(parallelism);
    while let Some((i, r)) = stream.next().await {
        let (traj, check_ms) = r?;
        done += 1;
        tracing::debug!(task = %traj.task_id, outcome = ?traj.outcome, score = traj.score, "task done");
        progress(&Progress {
            stage: stage.name.clone(),
            done,
            total,
            task_id: traj.task_id.clone(),
            outcome: traj.outcome,
            score: traj.score,
        });
        results[i] = Some((traj, check_ms));
    }
    drop(stream);
    let mut trajectories = Vec::with_capacity(total);
    let mut check_ms = 0.0;
    for (t, c) in results.into_iter().flatten() {
        check_ms += c;
        cache.insert(t.task_id.clone(), t.clone());
        trajectories.push(t);
    }
    let task_wall_ms: f64 = trajectories.iter().map(|t| t.wall_ms).sum();
    let tokens = trajectories
        .iter()
        .filter_map(|t| t.tokens)
        .fold(None::<u64>, |a, b| Some(a.unwrap_or(0).saturating_add(b)));
    let perf = Perf {
        elapsed_ms: ms(started.elapsed()),
        task_wall_ms,
        mean_task_wall_ms: task_wall_ms / trajectories.len().max(1) as f64,
        task_cpu_ms: trajectories.iter().map(|t| t.cpu_ms).sum(),
        max_peak_memory_bytes: trajectories
            .iter()
            .filter_map(|t| t.peak_memory_bytes)
            .max(),
        tokens,
        check_ms,
        parallelism,
    };
    let report = StageReport::aggregate(
        &suite.name,
        suite.kind,
        &stage.name,
        split,
        trajectories,
        stage.gate.as_ref(),
        perf,
    );
    tracing::info!(
        score = report.score,
        pass_rate = report.pass_rate,
        tasks = report.tasks,
        elapsed_ms = report.perf.elapsed_ms,
        "benchmark stage done"
    );
    Ok(report)
}

/// Run the suite's stages in order on `split`, stopping after a stage whose
/// gate fails. A task already run in an earlier stage is not run again.
pub async fn run_stages<E: Executor>(
    suite: &Suite,
    split: Split,
    agent: &RunSpec,
    executor: &E,
    opts: &RunOptions,
    progress: &(dyn Fn(&Progress) + Send + Sync),
) -> Result<RunReport, RunError> {
    let span = tracing::info_span!("benchmark.run", suite = %suite.name, split = %split, stages = suite.stages.len());
    async {
        let mut cache = BTreeMap::new();
        let mut stages = Vec::new();
        for stage in &suite.stages {
            let r = run_stage_cached(
                suite, stage, split, agent, executor, opts, progress, &mut cache,
            )
            .await?;
            let ok = r.gate_passed();
            stages.push(r);
            if !ok {
                return Ok(RunReport {
                    stages,
                    completed: false,
                    stopped_at: Some(stage.name.clone()),
                });
            }
        }
        Ok(RunReport {
            stages,
            completed: true,
            stopped_at: None,
        })
    }
    .instrument(span)
    .await
}

struct Ctx<'a, E> {
    suite: &'a Suite,
    agent: &'a RunSpec,
    code_dir: PathBuf,
    executor: &'a E,
    root: PathBuf,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn input_name(t: &Task) -> String {
    match &t.input {
        TaskInput::File(p) => p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "input".into()),
        TaskInput::Inline(b) => {
            if serde_json::from_slice::<serde_json::Value>(b).is_ok() {
                "input.json".into()
            } else {
                "input.txt".into()
            }
        }
    }
}

/// The excerpt kept in the trajectory: tails of stderr and stdout.
fn excerpt(stdout: &[u8], stderr: &[u8]) -> String {
    let mut s = String::new();
    if !stderr.is_empty() {
        s.push_str("stderr: ");
        s.push_str(&tail(stderr, 300));
    }
    if !stdout.is_empty() {
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str("stdout: ");
        s.push_str(&tail(stdout, 200));
    }
    s
}

async fn run_task<E: Executor>(
    ctx: &Ctx<'_, E>,
    idx: usize,
    task: &Task,
) -> Result<(Trajectory, f64), RunError> {
    let suite = ctx.suite;
    let tdir = ctx.root.join(format!("t{idx}"));
    let in_dir = tdir.join("in");
    tokio::fs::create_dir_all(&in_dir).await?;
    let name = input_name(task);
    let host_input = match &task.input {
        TaskInput::File(p) => {
            tokio::fs::copy(p, in_dir.join(&name)).await?;
            p.clone()
        }
        TaskInput::Inline(b) => {
            tokio::fs::write(in_dir.join(&name), b).await?;
            in_dir.join(&name)
        }
    };
    let sandbox_input = format!("{TASK_MOUNT}/{name}");

    let (command, workdir) = match &suite.command {
        Some(c) => (c.clone(), None),
        None => (ctx.agent.command.clone(), Some(PathBuf::from(AGENT_MOUNT))),
    };
    let mut job = Job::new(command);
    job.workdir = workdir;
    job.env = ctx.agent.env.clone();
    for (k, v) in &suite.env {
        job.env.insert(k.clone(), v.clone());
    }
    job.env.insert("DGM_TASK_INPUT".into(), sandbox_input);
    job.env.insert("DGM_TASK_ID".into(), task.id.clone());
    job.env
        .insert("DGM_TASK_SPLIT".into(), task.split.to_string());
    job.env.insert("PYTHONDONTWRITEBYTECODE".into(), "1".into());
    job.mounts = vec![
        Mount {
            host: ctx.code_dir.clone(),
            sandbox: AGENT_MOUNT.into(),
        },
        Mount {
            host: in_dir.clone(),
            sandbox: TASK_MOUNT.into(),
        },
    ];
    job.mounts.extend(suite.mounts.iter().cloned());
    job.limits = task.limits.to_sandbox();

    let res = match ctx.executor.execute(job).await {
        Ok(r) => r,
        Err(
            e @ (SandboxError::Unavailable(_)
            | SandboxError::Unenforceable { .. }
            | SandboxError::Cancelled),
        ) => {
            return Err(RunError::Sandbox(e));
        }
        Err(SandboxError::Setup(why)) => {
            let out = CheckOutcome::fail(
                ErrorCategory::SetupError,
                format!("sandbox setup failed: {why}"),
            );
            return Ok((trajectory(task, out, None), 0.0));
        }
    };

    let check_start = Instant::now();
    let out = match early_failure(suite, task, &res) {
        Some(f) => f,
        None => check_run(ctx, task, &tdir, &host_input, &res).await?,
    };
    let check_ms = ms(check_start.elapsed());
    let mut t = trajectory(task, out, Some(&res));
    if t.tokens.is_none() {
        t.tokens = check::reported_tokens(&res.stdout, &res.stderr);
    }
    Ok((t, check_ms))
}

/// Failures decided by how the sandboxed run ended, before any check.
fn early_failure(suite: &Suite, task: &Task, res: &ExecResult) -> Option<CheckOutcome> {
    let code = res
        .exit_code
        .map(|c| c.to_string())
        .unwrap_or_else(|| "none".into());
    match res.status {
        ExecStatus::Ok => None,
        ExecStatus::Timeout => Some(CheckOutcome::fail(
            ErrorCategory::Timeout,
            format!(
                "killed at the {} wall-clock limit",
                human(task.limits.timeout)
            ),
        )),
        ExecStatus::OutOfMemory => Some(CheckOutcome::fail(
            ErrorCategory::OutOfMemory,
            format!(
                "killed at the {} MiB memory limit",
                task.limits.memory_bytes / (1024 * 1024)
            ),
        )),
        ExecStatus::SetupError => Some(CheckOutcome::fail(
            ErrorCategory::SetupError,
            format!(
                "sandbox could not start the job: {}",
                tail(&res.stderr, 200)
            ),
        )),
        // Test runners exit non-zero when a test fails: the report decides.
        ExecStatus::NonZeroExit if matches!(suite.check, Check::UnitTests(_)) => None,
        ExecStatus::NonZeroExit | ExecStatus::Signaled => {
            let how = match res.status {
                ExecStatus::Signaled => format!("killed by signal {}", res.signal.unwrap_or(0)),
                _ => format!("exited with code {code}"),
            };
            if check::looks_like_syntax_error(&res.stderr, &res.stdout) {
                Some(CheckOutcome::fail(
                    ErrorCategory::SyntaxError,
                    format!(
                        "code does not parse/compile ({how}): {}",
                        tail(&res.stderr, 200)
                    ),
                ))
            } else {
                Some(CheckOutcome::fail(
                    ErrorCategory::Crash,
                    format!("{how}: {}", last_line(&res.stderr)),
                ))
            }
        }
    }
}

fn last_line(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| crate::report::truncate(l, 200))
        .unwrap_or_else(|| "no output on stderr".into())
}

async fn check_run<E: Executor>(
    ctx: &Ctx<'_, E>,
    task: &Task,
    tdir: &Path,
    host_input: &Path,
    res: &ExecResult,
) -> Result<CheckOutcome, RunError> {
    let suite = ctx.suite;
    Ok(match &suite.check {
        Check::Command(cmd) => score_with_command(cmd, suite, task, tdir, host_input, res).await?,
        Check::UnitTests(fw) => unit_test_outcome(*fw, res),
        Check::OpenEvolve(oe) => openevolve::outcome(oe, res),
        Check::Performance(p) => {
            if let Some(cmd) = &p.correctness {
                let c = score_with_command(cmd, suite, task, tdir, host_input, res).await?;
                if !c.passed {
                    return Ok(c);
                }
            }
            let actual_ms = match p.measure {
                Measure::Wall => ms(res.wall),
                Measure::Cpu => ms(res.cpu),
            };
            let time_score = (p.target_ms / actual_ms.max(1e-3)).min(1.0);
            let mut metrics = BTreeMap::new();
            metrics.insert("wall_ms".into(), ms(res.wall));
            metrics.insert("cpu_ms".into(), ms(res.cpu));
            metrics.insert("time_score".into(), time_score);
            let mut score = time_score;
            if let (Some(target), Some(peak)) = (p.memory_target_bytes, res.peak_memory_bytes) {
                let mem_score = (target as f64 / (peak.max(1)) as f64).min(1.0);
                metrics.insert("memory_score".into(), mem_score);
                metrics.insert("peak_memory_mb".into(), peak as f64 / 1048576.0);
                score = (time_score + mem_score) / 2.0;
            }
            let passed = score >= suite.pass_threshold;
            CheckOutcome {
                score,
                passed,
                category: (!passed).then_some(ErrorCategory::WrongAnswer),
                rationale: (!passed).then(|| {
                    format!(
                        "too slow: {actual_ms:.0} ms against a target of {:.0} ms",
                        p.target_ms
                    )
                }),
                metrics,
                ..Default::default()
            }
        }
        Check::Verify => match suite.verifier(&task.id) {
            None => CheckOutcome::fail(ErrorCategory::SetupError, "no verifier for this task"),
            Some(v) => {
                let vdir = tdir.join("check");
                tokio::fs::create_dir_all(&vdir).await?;
                match datasets::prepare_verification(v, task, &res.stdout, &vdir) {
                    Err(fail) => fail,
                    Ok(mut job) => {
                        job.mounts.push(Mount {
                            host: vdir.clone(),
                            sandbox: CHECK_MOUNT.into(),
                        });
                        job.limits = task.limits.to_sandbox();
                        job.env.insert("PYTHONDONTWRITEBYTECODE".into(), "1".into());
                        match ctx.executor.execute(job).await {
                            Ok(vres) => datasets::interpret_verification(v, task, &vres),
                            Err(SandboxError::Setup(why)) => CheckOutcome::fail(
                                ErrorCategory::SetupError,
                                format!("verification setup failed: {why}"),
                            ),
                            Err(e) => return Err(RunError::Sandbox(e)),
                        }
                    }
                }
            }
        },
    })
}

async fn score_with_command(
    cmd: &crate::suite::ScorerCommand,
    suite: &Suite,
    task: &Task,
    tdir: &Path,
    host_input: &Path,
    res: &ExecResult,
) -> Result<CheckOutcome, RunError> {
    let out_path = tdir.join("agent_stdout");
    let err_path = tdir.join("agent_stderr");
    tokio::fs::write(&out_path, &res.stdout).await?;
    tokio::fs::write(&err_path, &res.stderr).await?;
    let mut env: Vec<(String, String)> = vec![
        ("DGM_TASK_ID".into(), task.id.clone()),
        ("DGM_TASK_TAGS".into(), task.tags.join(",")),
        ("DGM_TASK_SPLIT".into(), task.split.to_string()),
        ("DGM_TASK_INPUT".into(), host_input.display().to_string()),
        ("DGM_AGENT_OUTPUT".into(), out_path.display().to_string()),
        ("DGM_AGENT_STDERR".into(), err_path.display().to_string()),
        (
            "DGM_AGENT_STATUS".into(),
            serde_json::to_value(res.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        ),
    ];
    if let Some(exp) = &task.expected {
        let p = tdir.join("expected.json");
        tokio::fs::write(&p, serde_json::to_vec(exp).unwrap_or_default()).await?;
        env.push(("DGM_TASK_EXPECTED".into(), p.display().to_string()));
    }
    if let Some(l) = task.label {
        env.push(("DGM_TASK_LABEL".into(), l.to_string()));
    }
    Ok(match check::run_scorer(cmd, &env, &res.stdout).await {
        Ok(stdout) => check::parse_scorer_output(&stdout, suite.pass_threshold),
        Err(why) => CheckOutcome::fail(ErrorCategory::ScorerError, why),
    })
}

pub(crate) fn unit_test_outcome(fw: TestFramework, res: &ExecResult) -> CheckOutcome {
    let text = String::from_utf8_lossy(&res.stdout);
    let tests = match fw {
        TestFramework::Pytest => match junit::parse_junit(&text) {
            Ok(t) => t,
            Err(why) => {
                let err = String::from_utf8_lossy(&res.stderr);
                if err.contains("No module named pytest") {
                    return CheckOutcome::fail(
                        ErrorCategory::SetupError,
                        "pytest is not installed where the sandbox runs (pip install pytest)",
                    );
                }
                return CheckOutcome::fail(
                    ErrorCategory::InvalidOutput,
                    format!(
                        "the test run left no JUnit report ({why}): {}",
                        last_line(&res.stderr)
                    ),
                );
            }
        },
        TestFramework::Cargo => {
            let t = junit::parse_libtest(&text);
            if t.is_empty() {
                let cat = if check::looks_like_syntax_error(&res.stdout, &res.stderr) {
                    ErrorCategory::SyntaxError
                } else {
                    ErrorCategory::Crash
                };
                return CheckOutcome::fail(
                    cat,
                    format!("cargo test reported no test: {}", tail(&res.stdout, 200)),
                );
            }
            t
        }
    };
    let counted: Vec<_> = tests.iter().filter(|t| !t.skipped).collect();
    let passed_n = counted.iter().filter(|t| t.passed).count();
    let total = counted.len();
    let score = if total == 0 {
        0.0
    } else {
        passed_n as f64 / total as f64
    };
    let passed = total > 0 && passed_n == total;
    let first_fail = counted.iter().find(|t| !t.passed);
    let mut metrics = BTreeMap::new();
    metrics.insert("tests_passed".into(), passed_n as f64);
    metrics.insert("tests_total".into(), total as f64);
    CheckOutcome {
        score,
        passed,
        category: (!passed).then_some(ErrorCategory::WrongAnswer),
        rationale: (!passed).then(|| match first_fail {
            Some(f) => format!(
                "{} of {total} tests failed; first: {}{}",
                total - passed_n,
                f.name,
                f.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
            None => "no test ran".into(),
        }),
        metrics,
        tests,
        ..Default::default()
    }
}

fn trajectory(task: &Task, out: CheckOutcome, res: Option<&ExecResult>) -> Trajectory {
    let (stdout, stderr) = res
        .map(|r| (r.stdout.clone(), r.stderr.clone()))
        .unwrap_or_default();
    Trajectory {
        task_id: task.id.clone(),
        tags: task.tags.clone(),
        split: task.split,
        outcome: if out.passed {
            Outcome::Success
        } else {
            Outcome::Failure
        },
        score: out.score,
        error_category: if out.passed {
            None
        } else {
            out.category.or(Some(ErrorCategory::WrongAnswer))
        },
        rationale: out.rationale,
        log_excerpt: excerpt(&stdout, &stderr),
        metrics: out.metrics,
        prediction: out.prediction,
        label: task.label,
        tests: out.tests,
        exit_code: res.and_then(|r| r.exit_code),
        wall_ms: res.map(|r| ms(r.wall)).unwrap_or(0.0),
        cpu_ms: res.map(|r| ms(r.cpu)).unwrap_or(0.0),
        peak_memory_bytes: res.and_then(|r| r.peak_memory_bytes),
        tokens: out.tokens,
        stdout,
        stderr,
    }
}
