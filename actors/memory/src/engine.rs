//! The memory engine: plain async Rust over the store, no actix.

use std::sync::Arc;

use async_trait::async_trait;
use dgm_events::*;

use crate::bank::{PruneRule, prune_reason};
use crate::port::{Memory, MemoryError, Reply, Request, StrategyUse};
use crate::replay::{Subject, record_stage, record_version_evaluated};

pub struct MemoryEngine {
    store: Arc<Store>,
}

impl MemoryEngine {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Memory for MemoryEngine {
    async fn ask(&self, request: Request) -> Result<Reply, MemoryError> {
        Ok(match request {
            Request::RecordEvaluation {
                meta,
                evaluation_id,
                agent,
                version,
                stage,
                report,
            } => {
                let subject = Subject {
                    agent: agent.as_deref(),
                    version: version.as_deref(),
                    stage,
                };
                let record = record_stage(&self.store, &meta, &evaluation_id, &subject, &report);
                Reply::Evaluation(record.await?)
            }
            Request::RepairVersionEvaluated {
                meta,
                evaluation_id,
                agent,
                suite,
                record: r,
            } => {
                let (stage, split) = (r.stage, r.split.as_str());
                record_version_evaluated(
                    &self.store,
                    &meta,
                    &evaluation_id,
                    &agent,
                    &r.version,
                    stage,
                    split,
                    &suite,
                    r.score,
                    &r.metrics,
                )
                .await?;
                Reply::Done
            }
            Request::StoreStrategy { meta, strategy } => {
                let id = strategy.strategy_id.clone();
                self.store
                    .append(StreamType::Strategy, &id, vec![strategy.into()], &meta)
                    .await?;
                Reply::Done
            }
            Request::RecordOutcome { meta, used, rule } => {
                Reply::Pruned(self.record_outcome_now(&meta, used, rule).await?)
            }
        })
    }
}

impl MemoryEngine {
    async fn record_outcome_now(
        &self,
        meta: &Metadata,
        used: StrategyUse,
        rule: PruneRule,
    ) -> Result<bool, StoreError> {
        let id = &used.strategy_id;
        let outcome = StrategyOutcomeRecorded {
            strategy_id: id.clone(),
            success: used.success,
        };
        self.store
            .append(StreamType::Strategy, id, vec![outcome.into()], meta)
            .await?;
        let uses = used.uses + 1;
        let (prune, rate) = rule.judge(uses, used.wins + u64::from(used.success));
        if !prune || used.already_pruned {
            return Ok(false);
        }
        let pruned = StrategyPruned {
            strategy_id: id.clone(),
            reason: prune_reason(uses, rate),
        };
        self.store
            .append(StreamType::Strategy, id, vec![pruned.into()], meta)
            .await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use dgm_events::testing::sqlite_url;
    use dgm_projections::ReasoningBank;
    use dgm_projections::projector::catch_up;

    use super::*;

    #[tokio::test]
    async fn outcomes_move_the_win_rate_and_a_losing_strategy_is_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&sqlite_url(dir.path())).await.expect("store"));
        let memory = MemoryEngine::new(store.clone());
        let meta = Metadata::new("test").with_run("run-1");
        memory
            .store_strategy(
                meta.clone(),
                StrategyStored {
                    strategy_id: "s1".into(),
                    agent: "a".into(),
                    kind: "mutate:constant".into(),
                    diagnosis: "all pass".into(),
                    summary: "changed a constant".into(),
                },
            )
            .await
            .expect("store strategy");
        let rule = PruneRule {
            min_uses: 2,
            below: 0.5,
        };
        let mut pruned = Vec::new();
        for (uses, success) in [(0, true), (1, false), (2, false)] {
            let wins = u64::from(uses > 0);
            let used = StrategyUse {
                strategy_id: "s1".into(),
                uses,
                wins,
                success,
                already_pruned: false,
            };
            pruned.push(
                memory
                    .record_outcome(meta.clone(), used, rule)
                    .await
                    .expect("outcome"),
            );
        }
        assert_eq!(pruned, [false, false, true]);
        let bank = catch_up::<ReasoningBank>(&store).await.expect("bank");
        let row = &bank["s1"];
        assert_eq!((row.uses, row.wins, row.pruned), (3, 1, true));
    }
}
