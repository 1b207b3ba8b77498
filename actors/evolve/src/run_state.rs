//! What a run has already done, folded from its events. Resuming a run is
//! reading this and doing only what is missing: every step of an attempt is
//! recorded before the next begins, and every step checks here first, so
//! after a kill nothing is lost and nothing is run twice.

use std::collections::BTreeMap;

use dgm_events::*;

/// One recorded evaluation (one stage on one split).
pub use dgm_memory::EvaluationRecord as EvalRecord;

#[derive(Debug, Clone, Default)]
pub struct AttemptState {
    pub started: Option<AttemptStarted>,
    pub diagnosis: Option<DiagnosisMade>,
    /// The child version this attempt created, with its proposal's summary.
    pub child: Option<VersionCreated>,
    /// evaluation id → record.
    pub evals: BTreeMap<String, EvalRecord>,
    pub admitted: bool,
    pub rejected: bool,
    pub activated: bool,
    pub strategy_stored: bool,
    pub strategy_outcomes: Vec<String>,
    pub strategy_pruned: Vec<String>,
    /// The model calls its proposer made, in order.
    pub calls: Vec<LlmCallMade>,
    pub finished: Option<AttemptFinished>,
}

#[derive(Debug, Clone, Default)]
pub struct RunState {
    pub started: Option<RunStarted>,
    pub ended: bool,
    /// attempt id → state, plus the run's own baseline evaluations under `baseline`.
    pub attempts: BTreeMap<String, AttemptState>,
    pub interruptions: u32,
    /// Evaluations begun but not yet completed, by evaluation id.
    pending_starts: BTreeMap<String, BenchmarkStarted>,
    /// Error category counts of those evaluations' trajectories so far.
    pending_failures: BTreeMap<String, BTreeMap<String, u64>>,
}

impl RunState {
    /// Folds every event recorded under `run_id`.
    pub async fn load(store: &Store, run_id: &str) -> Result<Self, StoreError> {
        let mut state = RunState::default();
        for r in store.read_all(None).await? {
            state.apply(run_id, &r);
        }
        Ok(state)
    }

    /// Folds one event of the log (events of other runs are ignored), so a
    /// caller that follows the log keeps the state current without rereading it.
    pub fn apply(&mut self, run_id: &str, r: &Recorded) {
        if r.metadata.run_id.as_deref() != Some(run_id) {
            return;
        }
        // AttemptStarted events of one generation share a commit (and its
        // metadata); each names its attempt in its payload.
        let attempt_key = match &r.event {
            Event::AttemptStarted(e) => e.attempt_id.as_str(),
            _ => r.metadata.attempt_id.as_deref().unwrap_or("baseline"),
        };
        let attempt = self.attempts.entry(attempt_key.to_string()).or_default();
        match &r.event {
            Event::RunStarted(e) => self.started = Some(e.clone()),
            Event::RunCompleted(_) | Event::RunFailed(_) => self.ended = true,
            Event::RunInterrupted(_) => self.interruptions += 1,
            Event::AttemptStarted(e) => attempt.started = Some(e.clone()),
            Event::DiagnosisMade(e) => attempt.diagnosis = Some(e.clone()),
            Event::VersionCreated(e) => attempt.child = Some(e.clone()),
            Event::VersionAdmitted(_) => attempt.admitted = true,
            Event::VersionRejected(_) => attempt.rejected = true,
            Event::ActiveVersionChanged(_) => attempt.activated = true,
            Event::StrategyStored(_) => attempt.strategy_stored = true,
            Event::StrategyOutcomeRecorded(e) => {
                attempt.strategy_outcomes.push(e.strategy_id.clone())
            }
            Event::StrategyPruned(e) => attempt.strategy_pruned.push(e.strategy_id.clone()),
            Event::AttemptFinished(e) => attempt.finished = Some(e.clone()),
            Event::LlmCallMade(e) => attempt.calls.push(e.clone()),
            Event::BenchmarkStarted(e) => {
                self.pending_starts
                    .insert(e.evaluation_id.clone(), e.clone());
            }
            Event::TrajectoryRecorded(e) => {
                if let Some(category) = &e.trajectory.error_category {
                    *self
                        .pending_failures
                        .entry(e.evaluation_id.clone())
                        .or_default()
                        .entry(category.clone())
                        .or_default() += 1;
                }
            }
            Event::BenchmarkCompleted(e) => {
                if let Some(start) = self.pending_starts.remove(&e.evaluation_id) {
                    attempt.evals.insert(
                        e.evaluation_id.clone(),
                        EvalRecord {
                            version: start.version.unwrap_or_default(),
                            stage: start.stage,
                            split: start.split,
                            score: e.score,
                            metrics: e.metrics.clone(),
                            passed_gate: e.passed_gate,
                            failures: self
                                .pending_failures
                                .remove(&e.evaluation_id)
                                .unwrap_or_default(),
                        },
                    );
                }
            }
            _ => {}
        }
    }

    /// Attempts of `generation`, in index order.
    pub fn generation(&self, generation: u32) -> Vec<(&String, &AttemptState)> {
        let mut list: Vec<_> = self
            .attempts
            .iter()
            .filter(|(_, a)| {
                a.started
                    .as_ref()
                    .is_some_and(|s| s.generation == generation)
            })
            .collect();
        list.sort_by_key(|(_, a)| a.started.as_ref().map(|s| s.index));
        list
    }

    /// The last generation that has started, if any.
    pub fn last_generation(&self) -> Option<u32> {
        self.attempts
            .values()
            .filter_map(|a| a.started.as_ref().map(|s| s.generation))
            .max()
    }

    pub fn finished_attempts(&self) -> impl Iterator<Item = &AttemptFinished> {
        self.attempts.values().filter_map(|a| a.finished.as_ref())
    }
}
