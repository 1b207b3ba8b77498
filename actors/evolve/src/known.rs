//! What the engine knows: the views it decides on, followed in memory.
//!
//! Every step of an attempt reads the archive, the replay buffer, the
//! ReasoningBank or the run's own state. Catching the stored views up on
//! each read decodes every stored row every time — tens of milliseconds per
//! attempt once a run has a few hundred versions — so the engine instead
//! folds each new event of the log exactly once, into memory, with the same
//! [`Projection::apply`] the stored views use. The stored views are caught
//! up when the run ends, for the CLI and other readers.

use dgm_events::{Event, Recorded, Store, StoreError};
use dgm_projections::projector::Rows;
use dgm_projections::{Archive, Projection, ReasoningBank, ReplayBuffer, TrajectoryRow};

use crate::run_state::RunState;

/// Events read per query while following the log.
const PAGE: u32 = 10_000;

/// The engine's views, current up to `position`.
#[derive(Debug, Default)]
pub struct Known {
    run_id: String,
    /// The last event folded in.
    position: u64,
    pub run: RunState,
    pub archive: Rows<Archive>,
    pub replay: Rows<ReplayBuffer>,
    pub bank: Rows<ReasoningBank>,
    /// Tokens and dollars of this run's model calls.
    pub llm_spent: (u64, f64),
    /// (agent, version) of every archive row an event may have changed
    /// since the engine last took them (to update its selection candidates
    /// without rebuilding them). Every event [`Archive::apply`] folds into
    /// a version row must name its version here.
    pub touched: std::collections::BTreeSet<(String, String)>,
    /// The replay buffer's keys by (agent, version), in log order: a step
    /// reads one version's trajectories without scanning every one.
    replay_by_version: std::collections::HashMap<(String, String), Vec<String>>,
}

impl Known {
    /// Nothing known yet; the first [`Known::refresh`] reads the whole log.
    pub fn new(run_id: &str) -> Self {
        Self {
            run_id: run_id.into(),
            ..Self::default()
        }
    }

    /// Folds in every event appended since the last refresh: from the
    /// store's memory of its own commits when that covers them all (no
    /// query — the engine wrote nearly everything it reads back), else from
    /// the log. See [`Store::recent`]: another process's events arrive with
    /// this one's next commit.
    pub async fn refresh(&mut self, store: &Store) -> Result<(), StoreError> {
        if let Some(recent) = store.recent(self.position) {
            for event in &recent {
                self.apply(event);
            }
            if let Some(last) = recent.last() {
                self.position = last.position;
            }
            return Ok(());
        }
        loop {
            let page = store.read(self.position, None, PAGE).await?;
            let Some(last) = page.last().map(|r| r.position) else {
                return Ok(());
            };
            for event in &page {
                self.apply(event);
            }
            self.position = last;
            if page.len() < PAGE as usize {
                return Ok(());
            }
        }
    }

    /// The replay buffer's rows of one version of one agent, in log order.
    pub fn trajectories_of<'a>(
        &'a self,
        agent: &str,
        version: &str,
    ) -> impl Iterator<Item = &'a TrajectoryRow> + 'a {
        self.replay_by_version
            .get(&(agent.to_string(), version.to_string()))
            .into_iter()
            .flatten()
            .filter_map(|key| self.replay.get(key))
    }

    fn apply(&mut self, event: &Recorded) {
        self.run.apply(&self.run_id, event);
        Archive::apply(&mut self.archive, event);
        if let Event::TrajectoryRecorded(e) = &event.event {
            let before = self.replay.len();
            ReplayBuffer::apply(&mut self.replay, event);
            // Rows are keyed in log order: the new one is the last.
            if self.replay.len() > before
                && let Some((key, _)) = self.replay.last_key_value()
            {
                self.replay_by_version
                    .entry((e.trajectory.agent.clone(), e.trajectory.version.clone()))
                    .or_default()
                    .push(key.clone());
            }
        }
        let mut touch = |agent: &str, version: &str| {
            self.touched
                .insert((agent.to_string(), version.to_string()));
        };
        match &event.event {
            Event::VersionCreated(e) => touch(&e.agent, &e.version),
            Event::VersionEvaluated(e) => touch(&e.agent, &e.version),
            Event::VersionAdmitted(e) => touch(&e.agent, &e.version),
            Event::VersionRejected(e) => touch(&e.agent, &e.version),
            Event::ActiveVersionChanged(e) => {
                touch(&e.agent, &e.to);
                if let Some(from) = &e.from {
                    touch(&e.agent, from);
                }
            }
            Event::RolledBack(e) => {
                touch(&e.agent, &e.to_version);
                if let Some(from) = &e.from {
                    touch(&e.agent, from);
                }
            }
            _ => {}
        }
        ReasoningBank::apply(&mut self.bank, event);
        if let dgm_events::Event::LlmCallMade(call) = &event.event
            && call.run_id == self.run_id
        {
            self.llm_spent.0 += call.prompt_tokens + call.completion_tokens;
            self.llm_spent.1 += call.cost_usd;
        }
    }
}

#[cfg(test)]
mod tests {
    use dgm_events::testing::sqlite_url;
    use dgm_events::*;
    use dgm_projections::projector::catch_up;

    use super::*;

    /// Following the log event by event must give exactly the stored views.
    #[tokio::test]
    async fn following_the_log_equals_catching_up_the_stored_views() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&sqlite_url(dir.path())).await.expect("store");
        let meta = Metadata::new("test").with_run("run-1");
        let mut known = Known::new("run-1");
        for round in 0..3 {
            let id = format!("eval-{round}");
            store
                .append(
                    StreamType::Evaluation,
                    &id,
                    vec![
                        BenchmarkStarted {
                            evaluation_id: id.clone(),
                            agent: Some("a".into()),
                            version: Some("v1".into()),
                            suite: "s".into(),
                            stage: 1,
                            split: "train".into(),
                            tasks: 1,
                        }
                        .into(),
                        TrajectoryRecorded {
                            evaluation_id: id.clone(),
                            trajectory: crate::testing::trajectory(
                                "a",
                                "v1",
                                &format!("t{round}"),
                                Some("timeout"),
                            ),
                        }
                        .into(),
                        BenchmarkCompleted {
                            evaluation_id: id.clone(),
                            score: Some(0.0),
                            passed_gate: false,
                            metrics: Default::default(),
                        }
                        .into(),
                    ],
                    &meta,
                )
                .await
                .expect("append");
            known.refresh(&store).await.expect("refresh");
            assert_eq!(
                known.replay,
                catch_up::<ReplayBuffer>(&store).await.expect("catch up")
            );
            let indexed: Vec<_> = known.trajectories_of("a", "v1").collect();
            let scanned: Vec<_> = known
                .replay
                .values()
                .filter(|r| r.trajectory.agent == "a" && r.trajectory.version == "v1")
                .collect();
            assert_eq!(indexed, scanned, "the index finds every row, in order");
            assert_eq!(indexed.len(), round + 1);
            let baseline = &known.run.attempts["baseline"];
            assert_eq!(baseline.evals.len(), round + 1);
            assert_eq!(baseline.evals[&id].failures["timeout"], 1);
        }
        let loaded = RunState::load(&store, "run-1").await.expect("load");
        assert_eq!(
            format!("{:?}", loaded.attempts),
            format!("{:?}", known.run.attempts)
        );
    }
}
