//! Evaluate: run a version's code against the suite, a stage at a time,
//! stopping at a failed gate, and record each stage (through memory: the
//! trajectories are the replay buffer's rows).
//!
//! Where the code runs is behind [`Evaluator`]: [`LocalEvaluator`] runs it
//! in this machine's sandbox; a remote evaluator (workers) implements the
//! same trait and the loop does not change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use dgm_bench::{RunOptions, RunSpec, Split, Stage, StageReport, Suite, run_stage_cached};
use dgm_events::Files;
use dgm_memory::{EvaluationRecord, Memory};
use dgm_sandbox::Executor;

use crate::cache::CodeDirs;
use crate::error::EvolveError;
use crate::run::{RunContext, TRAIN};
use crate::run_state::AttemptState;

/// Task results of earlier stages of one version, by task: a later stage
/// that shares a task does not run it again.
pub type EarlierStages = BTreeMap<String, dgm_bench::Trajectory>;

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error(transparent)]
    Bench(#[from] dgm_bench::RunError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// One stage of one version to run.
pub struct StageJob<'a> {
    pub suite: &'a Suite,
    pub stage: &'a Stage,
    pub split: Split,
    pub version: &'a str,
    pub tree_hash: &'a str,
    pub files: &'a Files,
    /// The agent's run command (its manifest's `run`).
    pub command: &'a [String],
}

/// Runs stages of versions: where and how is the implementation's. Its
/// futures need not be `Send` (the sandbox runner's are not provably so
/// to the compiler); the loop awaits them on its own task.
#[async_trait(?Send)]
pub trait Evaluator: Send + Sync {
    async fn run_stage(
        &self,
        job: StageJob<'_>,
        earlier: &mut EarlierStages,
    ) -> Result<StageReport, EvaluateError>;
}

/// Runs stages in this machine's sandbox, from code directories reused
/// version after version.
pub struct LocalEvaluator<E> {
    executor: Arc<E>,
    parallelism: usize,
    code_dirs: CodeDirs,
}

impl<E: Executor> LocalEvaluator<E> {
    /// `parallelism`: tasks of one stage in flight at once.
    pub fn new(executor: Arc<E>, parallelism: usize) -> Self {
        Self {
            executor,
            parallelism: parallelism.max(1),
            code_dirs: CodeDirs::default(),
        }
    }
}

#[async_trait(?Send)]
impl<E: Executor + 'static> Evaluator for LocalEvaluator<E> {
    async fn run_stage(
        &self,
        job: StageJob<'_>,
        earlier: &mut EarlierStages,
    ) -> Result<StageReport, EvaluateError> {
        let written = self.code_dirs.checkout(job.files)?;
        let spec = RunSpec {
            code_dir: written.path().to_path_buf(),
            command: job.command.to_vec(),
            env: BTreeMap::new(),
        };
        let opts = RunOptions {
            parallelism: self.parallelism,
            docker_available: false,
        };
        let report = run_stage_cached(
            job.suite,
            job.stage,
            job.split,
            &spec,
            self.executor.as_ref(),
            &opts,
            &|_| {},
            earlier,
        )
        .await;
        self.code_dirs.give_back(written);
        Ok(report?)
    }
}

/// The evaluate step: stages in order through an [`Evaluator`], each
/// recorded through [`Memory`] before the next begins; evaluations already
/// recorded (a resumed attempt) are reused, never run twice.
pub struct Evaluations {
    pub evaluator: Arc<dyn Evaluator>,
    pub memory: Arc<dyn Memory>,
    /// Time spent waiting on the evaluator, for the loop-overhead figure.
    judging_nanos: AtomicU64,
}

/// A version to evaluate.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    /// The attempt it belongs to (`None`: the run's baseline).
    pub attempt: Option<&'a str>,
    pub version: &'a str,
    pub tree_hash: &'a str,
}

impl Evaluations {
    pub fn new(evaluator: Arc<dyn Evaluator>, memory: Arc<dyn Memory>) -> Self {
        Self {
            evaluator,
            memory,
            judging_nanos: AtomicU64::new(0),
        }
    }

    pub fn judging_ms(&self) -> f64 {
        self.judging_nanos.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// The train stages in order, stopping at a failed gate; evaluation ids
    /// are `{prefix}/train/{stage}`.
    pub async fn train(
        &self,
        ctx: &RunContext,
        subject: Subject<'_>,
        done: &AttemptState,
        prefix: &str,
    ) -> Result<Vec<EvaluationRecord>, EvolveError> {
        let mut out = Vec::new();
        let mut earlier = EarlierStages::new();
        for stage in 1..=ctx.last_stage() {
            let id = format!("{prefix}/train/{stage}");
            let record = match done.evals.get(&id) {
                Some(r) => {
                    self.repair(ctx, subject, &id, r).await?;
                    r.clone()
                }
                None => {
                    self.one(ctx, subject, stage, TRAIN, &id, done, &mut earlier)
                        .await?
                }
            };
            let passed = record.passed_gate;
            out.push(record);
            if !passed {
                break;
            }
        }
        Ok(out)
    }

    /// One stage on one split, recorded as evaluation `id` (validation and
    /// re-evaluations run the split's every task).
    #[allow(clippy::too_many_arguments)]
    pub async fn one(
        &self,
        ctx: &RunContext,
        subject: Subject<'_>,
        stage: u32,
        split: Split,
        id: &str,
        done: &AttemptState,
        earlier: &mut EarlierStages,
    ) -> Result<EvaluationRecord, EvolveError> {
        if let Some(r) = done.evals.get(id) {
            return Ok(r.clone());
        }
        let command = ctx
            .known()
            .await?
            .archive
            .get(&ctx.config.agent)
            .map(|archive| archive.manifest.run.clone())
            .unwrap_or_default();
        let stage_def = if split == TRAIN {
            ctx.suite.stages[(stage - 1) as usize].clone()
        } else {
            Stage::all()
        };
        let files = ctx.tree(subject.tree_hash).await?;
        let job = StageJob {
            suite: &ctx.suite,
            stage: &stage_def,
            split,
            version: subject.version,
            tree_hash: subject.tree_hash,
            files: &files,
            command: &command,
        };
        let judged = Instant::now();
        let report = self.evaluator.run_stage(job, earlier).await;
        self.judging_nanos
            .fetch_add(judged.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let record = self
            .memory
            .record_evaluation(
                ctx.meta(subject.attempt),
                id.into(),
                (Some(ctx.config.agent.clone()), Some(subject.version.into())),
                stage,
                report?,
            )
            .await?;
        Ok(record)
    }

    /// The full train split once more, recorded as `id`: a re-evaluation
    /// (evaluation may be noisy).
    pub async fn again(
        &self,
        ctx: &RunContext,
        subject: Subject<'_>,
        id: &str,
        done: &AttemptState,
    ) -> Result<EvaluationRecord, EvolveError> {
        let mut fresh = EarlierStages::new();
        self.one(ctx, subject, ctx.last_stage(), TRAIN, id, done, &mut fresh)
            .await
    }

    /// After a crash between an evaluation and the version's record of it.
    async fn repair(
        &self,
        ctx: &RunContext,
        subject: Subject<'_>,
        id: &str,
        r: &EvaluationRecord,
    ) -> Result<(), EvolveError> {
        let key = dgm_projections::archive::score_key(&ctx.suite.name, r.stage, &r.split);
        let has = ctx
            .with_archive(|_, archive| {
                archive
                    .versions
                    .get(subject.version)
                    .is_some_and(|v| v.metrics.contains_key(&key))
            })
            .await?;
        if !has {
            let mut record = r.clone();
            record.version = subject.version.into();
            self.memory
                .repair_version_evaluated(
                    ctx.meta(subject.attempt),
                    id.into(),
                    (ctx.config.agent.clone(), ctx.suite.name.clone()),
                    record,
                )
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::SizeExecutor;

    #[tokio::test]
    async fn the_local_evaluator_runs_the_version_it_is_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("suite.toml"),
            "[suite]\nname = \"s\"\nkind = \"performance\"\n\n[performance]\nmeasure = \"wall\"\ntarget_ms = 100\n\n[[tasks]]\nid = \"t\"\ninput = { n = 1 }\n",
        )
        .expect("suite");
        let suite = dgm_bench::load_suite(dir.path()).expect("load");
        let executor = SizeExecutor {
            wall: |size| Duration::from_millis(size * 10),
            ..SizeExecutor::millis_per_byte("a.py")
        };
        let evaluator = LocalEvaluator::new(Arc::new(executor), 1);
        let mut scores = Vec::new();
        for code in ["x", "xxxxxxxxxxxxxxxxxxxx"] {
            let files: Files = [("a.py".to_string(), code.as_bytes().to_vec())].into();
            let job = StageJob {
                suite: &suite,
                stage: &Stage::all(),
                split: Split::Train,
                version: "v",
                tree_hash: "h",
                files: &files,
                command: &["python3".to_string(), "a.py".to_string()],
            };
            let report = evaluator
                .run_stage(job, &mut EarlierStages::new())
                .await
                .expect("run");
            scores.push(report.score);
        }
        assert_eq!(
            scores,
            [1.0, 0.5],
            "10 ms then 200 ms against a 100 ms target"
        );
    }
}
