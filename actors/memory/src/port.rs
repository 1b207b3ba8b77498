//! What the loop asks of memory. The evolve crate sees only this trait:
//! the in-process [`crate::MemoryEngine`] and the actor's address
//! (`Addr<MemoryActor>`) both implement it, by answering one [`Request`];
//! the other methods are that request spelled out.

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
    #[error("memory answered another request")]
    WrongReply,
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

/// One request to memory.
pub enum Request {
    /// Record one stage's evaluation atomically (start, every trajectory —
    /// the replay buffer's rows —, completion) and, for an agent's
    /// version, `VersionEvaluated`.
    RecordEvaluation {
        meta: Metadata,
        evaluation_id: String,
        agent: Option<String>,
        version: Option<String>,
        stage: u32,
        report: Box<StageReport>,
    },
    /// The version's side of an evaluation recorded before a crash cut it off.
    RepairVersionEvaluated {
        meta: Metadata,
        evaluation_id: String,
        agent: String,
        suite: String,
        record: EvaluationRecord,
    },
    /// A new ReasoningBank strategy (a promotion's change and diagnosis).
    StoreStrategy {
        meta: Metadata,
        strategy: StrategyStored,
    },
    /// A strategy's outcome; prunes it when `rule` says so.
    RecordOutcome {
        meta: Metadata,
        used: StrategyUse,
        rule: PruneRule,
    },
}

/// What each [`Request`] answers.
#[derive(Debug)]
pub enum Reply {
    Evaluation(EvaluationRecord),
    Done,
    /// Whether the strategy was pruned.
    Pruned(bool),
}

#[async_trait]
pub trait Memory: Send + Sync {
    async fn ask(&self, request: Request) -> Result<Reply, MemoryError>;

    async fn record_evaluation(
        &self,
        meta: Metadata,
        evaluation_id: String,
        (agent, version): (Option<String>, Option<String>),
        stage: u32,
        report: StageReport,
    ) -> Result<EvaluationRecord, MemoryError> {
        let request = Request::RecordEvaluation {
            meta,
            evaluation_id,
            agent,
            version,
            stage,
            report: Box::new(report),
        };
        match self.ask(request).await? {
            Reply::Evaluation(record) => Ok(record),
            _ => Err(MemoryError::WrongReply),
        }
    }

    async fn repair_version_evaluated(
        &self,
        meta: Metadata,
        evaluation_id: String,
        (agent, suite): (String, String),
        record: EvaluationRecord,
    ) -> Result<(), MemoryError> {
        let request = Request::RepairVersionEvaluated {
            meta,
            evaluation_id,
            agent,
            suite,
            record,
        };
        self.ask(request).await.map(drop)
    }

    async fn store_strategy(
        &self,
        meta: Metadata,
        strategy: StrategyStored,
    ) -> Result<(), MemoryError> {
        self.ask(Request::StoreStrategy { meta, strategy })
            .await
            .map(drop)
    }

    /// Returns whether the strategy was pruned.
    async fn record_outcome(
        &self,
        meta: Metadata,
        used: StrategyUse,
        rule: PruneRule,
    ) -> Result<bool, MemoryError> {
        match self
            .ask(Request::RecordOutcome { meta, used, rule })
            .await?
        {
            Reply::Pruned(pruned) => Ok(pruned),
            _ => Err(MemoryError::WrongReply),
        }
    }
}
