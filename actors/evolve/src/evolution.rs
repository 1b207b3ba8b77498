//! The orchestrator of a run: record its start, score the seed, then
//! generation after generation draw parents (the select step), run the
//! attempts concurrently and settle them in index order (`crate::attempt`),
//! until a budget is spent; summarize. Resumable at any point: every step
//! asks the run's recorded state what is already done.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use dgm_events::*;
use dgm_memory::{Memory, MemoryEngine};
use dgm_projections::projector::catch_up_all;
use dgm_propose::Proposer;
use dgm_sandbox::Executor;
use tracing::Instrument;

use crate::attempt::{self, Steps};
use crate::budget::{self, Spent};
use crate::config::EvolveConfig;
use crate::error::EvolveError;
use crate::run::RunContext;
use crate::run_state::{AttemptState, RunState};
use crate::steps::approve::{ApproveAll, Approver};
use crate::steps::decide;
use crate::steps::evaluate::{Evaluations, Evaluator, LocalEvaluator, Subject};
use crate::steps::predict::{EvaluateAll, Predictor};
use crate::steps::remember;
use crate::steps::select::{Generation, Selector};
use crate::summary::{Ending, Summary, loop_overhead, summarize};

/// Hears about progress (the CLI draws bars; tests ignore it).
pub trait Observer: Send + Sync {
    fn generation_started(&self, _generation: u32, _total: u32, _attempts: u32) {}
    fn attempt_finished(&self, _finished: &AttemptFinished, _best: Option<f64>) {}
    fn generation_finished(&self, _generation: u32, _best: Option<f64>) {}
}

pub struct NoObserver;
impl Observer for NoObserver {}

/// One run of one agent.
pub struct Evolution {
    ctx: RunContext,
    steps: Steps,
    stop: Arc<AtomicBool>,
}

impl Evolution {
    /// A new run (recorded when [`Evolution::run`] starts), evaluated in
    /// this machine's sandbox through `executor`.
    pub fn new<E: Executor + 'static>(
        store: Arc<Store>,
        executor: Arc<E>,
        proposer: Arc<dyn Proposer>,
        config: EvolveConfig,
    ) -> Result<Self, EvolveError> {
        config.strategy().map_err(EvolveError::Config)?;
        if config.population == 0 || config.generations == 0 {
            return Err(EvolveError::Config(
                "--population and --generations must be at least 1".into(),
            ));
        }
        if !(config.threshold.is_finite() && config.threshold >= 0.0) {
            return Err(EvolveError::Config(
                "--threshold must be a number ≥ 0".into(),
            ));
        }
        let run_id = format!("run-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Self::assemble(store, executor, proposer, config, run_id)
    }

    /// Continues run `run_id` with the configuration it began with.
    pub async fn resume<E: Executor + 'static>(
        store: Arc<Store>,
        executor: Arc<E>,
        proposer: Arc<dyn Proposer>,
        run_id: &str,
    ) -> Result<Self, EvolveError> {
        let state = RunState::load(&store, run_id).await?;
        let started = state
            .started
            .ok_or_else(|| EvolveError::UnknownRun(run_id.into()))?;
        if state.ended {
            return Err(EvolveError::Ended(run_id.into()));
        }
        let config: EvolveConfig = serde_json::from_value(started.config).map_err(|e| {
            EvolveError::Config(format!("run {run_id} has an unreadable config: {e}"))
        })?;
        Self::assemble(store, executor, proposer, config, run_id.into())
    }

    /// The run with the default ports: the local sandbox, memory in
    /// process, every child evaluated, every promotion approved.
    fn assemble<E: Executor + 'static>(
        store: Arc<Store>,
        executor: Arc<E>,
        proposer: Arc<dyn Proposer>,
        config: EvolveConfig,
        run_id: String,
    ) -> Result<Self, EvolveError> {
        let suite = dgm_bench::load_suite(&config.suite_dir)
            .map_err(|e| EvolveError::Suite(e.to_string()))?;
        let memory: Arc<dyn Memory> = Arc::new(MemoryEngine::new(store.clone()));
        let evaluator = Arc::new(LocalEvaluator::new(executor, config.parallelism));
        let steps = Steps {
            selector: Selector::new(&config.agent, &suite.name, suite.stages.len() as u32),
            proposer,
            predictor: Arc::new(EvaluateAll),
            evaluations: Evaluations::new(evaluator, memory.clone()),
            approver: Arc::new(ApproveAll),
            memory,
        };
        Ok(Self {
            ctx: RunContext::new(store, run_id, config, suite),
            steps,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Records memory through `memory` (e.g. the memory actor's address).
    pub fn with_memory(mut self, memory: Arc<dyn Memory>) -> Self {
        self.steps.evaluations.memory = memory.clone();
        self.steps.memory = memory;
        self
    }

    /// Runs evaluations through `evaluator` instead of the local sandbox.
    pub fn with_evaluator(mut self, evaluator: Arc<dyn Evaluator>) -> Self {
        self.steps.evaluations.evaluator = evaluator;
        self
    }

    /// Asks `predictor` whether each child is worth evaluating.
    pub fn with_predictor(mut self, predictor: Arc<dyn Predictor>) -> Self {
        self.steps.predictor = predictor;
        self
    }

    /// Asks `approver` before each promotion.
    pub fn with_approver(mut self, approver: Arc<dyn Approver>) -> Self {
        self.steps.approver = approver;
        self
    }

    pub fn run_id(&self) -> &str {
        &self.ctx.run_id
    }

    pub fn config(&self) -> &EvolveConfig {
        &self.ctx.config
    }

    /// Set it to stop after the attempts in flight (Ctrl-C).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Runs until a budget is spent; resumable at any point.
    pub async fn run(&self, observer: &dyn Observer) -> Result<Summary, EvolveError> {
        let span = tracing::info_span!("darwin.evolve", run = %self.ctx.run_id, agent = %self.ctx.config.agent);
        self.run_inner(observer).instrument(span).await
    }

    async fn run_inner(&self, observer: &dyn Observer) -> Result<Summary, EvolveError> {
        let ctx = &self.ctx;
        let began = Instant::now();
        if ctx.known().await?.run.started.is_none() {
            let agent = ctx.with_archive(|_, archive| archive.agent.clone()).await?;
            let config = serde_json::to_value(&ctx.config)
                .map_err(|e| EvolveError::Config(e.to_string()))?;
            let started = RunStarted {
                run_id: ctx.run_id.clone(),
                agent,
                suite: ctx.suite.name.clone(),
                config,
            };
            ctx.record(vec![started.into()], None).await?;
        } else {
            self.restore_proposer().await?;
        }
        let state = ctx.known().await?.run.clone();
        let noisy = self.baseline(&state).await?;
        let strategy = ctx.config.strategy().map_err(EvolveError::Config)?;
        // Continue the last started generation if it has unfinished attempts.
        let mut generation = match state.last_generation() {
            None | Some(0) => 1,
            Some(g)
                if state
                    .generation(g)
                    .iter()
                    .all(|(_, a)| a.finished.is_some()) =>
            {
                g + 1
            }
            Some(g) => g,
        };
        let stop_reason = loop {
            // Read under the lock, without copying the run's whole state.
            let (attempts_done, resuming, spent) = {
                let known = ctx.known().await?;
                let done = known.run.finished_attempts().count() as u32;
                let resuming = !known.run.generation(generation).is_empty();
                let spent = Spent {
                    stopped: self.stop.load(Ordering::SeqCst),
                    generation,
                    attempts_done: done,
                    elapsed: began.elapsed(),
                    llm: known.llm_spent,
                };
                let reason = (!resuming)
                    .then(|| budget::stop_reason(&ctx.config, &known.run, &spent))
                    .flatten();
                (done, resuming, reason)
            };
            if let Some(reason) = spent {
                break reason;
            }
            if !resuming {
                let events = {
                    let mut known = ctx.known().await?;
                    self.steps
                        .selector
                        .draw(
                            &mut known,
                            &ctx.config,
                            &strategy,
                            Generation {
                                run_id: &ctx.run_id,
                                number: generation,
                                attempts_done,
                            },
                        )
                        .map_err(EvolveError::Config)?
                };
                // The whole draw is one commit: a kill can never leave a
                // generation half-started.
                ctx.record(events, None).await?;
            }
            let attempts: Vec<(String, AttemptState)> = ctx
                .known()
                .await?
                .run
                .generation(generation)
                .into_iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            observer.generation_started(generation, ctx.config.generations, attempts.len() as u32);
            // Execute concurrently; settle in index order.
            let executed = futures::future::join_all(attempts.iter().map(|(id, a)| {
                let span = tracing::info_span!("darwin.execute_attempt", attempt = %id);
                attempt::execute(ctx, &self.steps, id, a.clone()).instrument(span)
            }))
            .await;
            for ((id, _), result) in attempts.iter().zip(executed) {
                let attempt = result?;
                if attempt.finished.is_some() {
                    continue;
                }
                let finished = attempt::settle(ctx, &self.steps, id, &attempt, noisy).await?;
                observer.attempt_finished(&finished, self.best().await?);
            }
            observer.generation_finished(generation, self.best().await?);
            if self.stop.load(Ordering::SeqCst) {
                break "interrupted".to_string();
            }
            generation += 1;
        };
        let summary = {
            let known = ctx.known().await?;
            let archive = known.archive.get(&ctx.config.agent).ok_or_else(|| {
                EvolveError::Config(format!("agent `{}` is not registered", ctx.config.agent))
            })?;
            let wall_ms = began.elapsed().as_secs_f64() * 1e3;
            let finished = known.run.finished_attempts().count();
            let judging = self.steps.evaluations.judging_ms();
            let ending = Ending {
                run_id: &ctx.run_id,
                agent: &ctx.config.agent,
                full_train: &ctx.full_train_key(),
                stop_reason: &stop_reason,
                elapsed_secs: began.elapsed().as_secs_f64(),
                loop_ms_per_attempt: loop_overhead(
                    ctx.config.population,
                    finished,
                    wall_ms,
                    judging,
                ),
            };
            summarize(archive, &known.run, &ending)
        };
        let end: Event = if stop_reason == "interrupted" {
            RunInterrupted {
                run_id: ctx.run_id.clone(),
                reason: "stopped by the user; `dgm resume` continues".into(),
            }
            .into()
        } else {
            RunCompleted {
                run_id: ctx.run_id.clone(),
                summary: serde_json::to_value(&summary).unwrap_or_default(),
            }
            .into()
        };
        ctx.record(vec![end], None).await?;
        // The stored views were not touched during the run (see `known`):
        // bring them up to date once, so readers find them current.
        catch_up_all(&ctx.store).await?;
        Ok(summary)
    }

    /// The best score in the archive now.
    async fn best(&self) -> Result<Option<f64>, EvolveError> {
        let mut known = self.ctx.known().await?;
        Ok(self.steps.selector.best(&mut known, None).map(|(_, s)| s))
    }

    /// Scores the active version on the train split (twice: a disagreement
    /// means evaluation is noisy). Returns whether it is.
    async fn baseline(&self, state: &RunState) -> Result<bool, EvolveError> {
        let ctx = &self.ctx;
        let active = ctx
            .with_archive(|_, archive| {
                let active = archive.active.clone()?;
                let tree = archive.versions.get(&active)?.tree_hash.clone();
                Some((active, tree))
            })
            .await?;
        let Some((active, tree)) = active else {
            return Err(EvolveError::Config(format!(
                "agent `{}` has no active version",
                ctx.config.agent
            )));
        };
        let subject = Subject {
            attempt: None,
            version: &active,
            tree_hash: &tree,
        };
        let done = state.attempts.get("baseline").cloned().unwrap_or_default();
        let prefix = format!("{}/baseline", ctx.run_id);
        let evaluations = &self.steps.evaluations;
        let first = evaluations.train(ctx, subject, &done, &prefix).await?;
        let second_id = format!("{prefix}/re");
        let second = evaluations.again(ctx, subject, &second_id, &done).await?;
        Ok(decide::noisy(
            first.last().and_then(|r| r.score),
            second.score,
        ))
    }

    /// Tells the proposer how this run's earlier proposals fared, so what
    /// it learns (a model bandit's statistics) survives `dgm resume`.
    async fn restore_proposer(&self) -> Result<(), EvolveError> {
        let ctx = &self.ctx;
        let past = ctx
            .with_archive(|known, archive| {
                remember::past_proposals(&known.run, archive, &ctx.suite.name)
            })
            .await?;
        self.steps.proposer.restore(&past);
        Ok(())
    }
}
