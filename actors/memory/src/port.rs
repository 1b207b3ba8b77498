//! What the loop asks of memory. The evolve crate sees only this trait:
//! the in-process [`crate::MemoryEngine`] and the actor's address
//! (`Addr<MemoryActor>`) both implement it.

use async_trait::async_trait;
use dgm_bench::StageReport;
use dgm_events::{Metadata, StoreError, StrategyStored};

use crate::bank::PruneRule;
use crate::replay::EvaluationRecord;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the memory actor is gone: {0}")]
    Unavailable(String),
}

/// One use of a strategy by an attempt: its counts before this use.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyUse {
    pub strategy_id: String,
    pub uses: u64,
    pub wins: u64,
    /// Whether the child improved on its parent.
    pub success: bool,
    /// The attempt already pruned it (a resumed attempt records nothing twice).
    pub already_pruned: bool,
}

#[async_trait]
pub trait Memory: Send + Sync {
    /// Records one stage's evaluation atomically (start, every trajectory
    /// — the replay buffer's rows —, completion) and, for an agent's
    /// version, `VersionEvaluated`.
    async fn record_evaluation(
        &self,
        meta: Metadata,
        evaluation_id: String,
        agent: Option<String>,
        version: Option<String>,
        stage: u32,
        report: StageReport,
    ) -> Result<EvaluationRecord, MemoryError>;

    /// The version's side of an evaluation recorded before a crash cut it off.
    async fn repair_version_evaluated(
        &self,
        meta: Metadata,
        evaluation_id: String,
        agent: String,
        suite: String,
        record: EvaluationRecord,
    ) -> Result<(), MemoryError>;

    /// A new ReasoningBank strategy (a promotion's change and diagnosis).
    async fn store_strategy(
        &self,
        meta: Metadata,
        strategy: StrategyStored,
    ) -> Result<(), MemoryError>;

    /// A strategy's outcome; prunes it when `rule` says so. Returns whether
    /// it was pruned.
    async fn record_outcome(
        &self,
        meta: Metadata,
        used: StrategyUse,
        rule: PruneRule,
    ) -> Result<bool, MemoryError>;
}
