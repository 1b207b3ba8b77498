//! The memory actor: a thin actix shell around [`MemoryEngine`]. Its
//! address is a [`Memory`] port, so the loop can talk to it as to the
//! engine itself.

use std::sync::Arc;

use actix::prelude::*;
use async_trait::async_trait;
use dgm_bench::StageReport;
use dgm_events::{Metadata, StrategyStored};

use crate::bank::PruneRule;
use crate::engine::MemoryEngine;
use crate::port::{Memory, MemoryError, StrategyUse};
use crate::replay::EvaluationRecord;

pub struct MemoryActor {
    engine: Arc<MemoryEngine>,
}

impl MemoryActor {
    pub fn new(engine: MemoryEngine) -> Self {
        Self {
            engine: Arc::new(engine),
        }
    }
}

impl Actor for MemoryActor {
    type Context = Context<Self>;
}

/// One request to memory: the port's calls, as one message.
pub enum Request {
    RecordEvaluation {
        meta: Metadata,
        evaluation_id: String,
        agent: Option<String>,
        version: Option<String>,
        stage: u32,
        report: Box<StageReport>,
    },
    RepairVersionEvaluated {
        meta: Metadata,
        evaluation_id: String,
        agent: String,
        suite: String,
        record: EvaluationRecord,
    },
    StoreStrategy {
        meta: Metadata,
        strategy: StrategyStored,
    },
    RecordOutcome {
        meta: Metadata,
        used: StrategyUse,
        rule: PruneRule,
    },
}

/// What each [`Request`] answers.
pub enum Reply {
    Evaluation(EvaluationRecord),
    Done,
    Pruned(bool),
}

impl Message for Request {
    type Result = Result<Reply, MemoryError>;
}

impl Handler<Request> for MemoryActor {
    type Result = ResponseFuture<Result<Reply, MemoryError>>;

    fn handle(&mut self, request: Request, _: &mut Self::Context) -> Self::Result {
        let engine = self.engine.clone();
        Box::pin(async move {
            Ok(match request {
                Request::RecordEvaluation {
                    meta,
                    evaluation_id,
                    agent,
                    version,
                    stage,
                    report,
                } => Reply::Evaluation(
                    engine
                        .record_evaluation(meta, evaluation_id, agent, version, stage, *report)
                        .await?,
                ),
                Request::RepairVersionEvaluated {
                    meta,
                    evaluation_id,
                    agent,
                    suite,
                    record,
                } => {
                    engine
                        .repair_version_evaluated(meta, evaluation_id, agent, suite, record)
                        .await?;
                    Reply::Done
                }
                Request::StoreStrategy { meta, strategy } => {
                    engine.store_strategy(meta, strategy).await?;
                    Reply::Done
                }
                Request::RecordOutcome { meta, used, rule } => {
                    Reply::Pruned(engine.record_outcome(meta, used, rule).await?)
                }
            })
        })
    }
}

async fn ask(addr: &Addr<MemoryActor>, request: Request) -> Result<Reply, MemoryError> {
    addr.send(request)
        .await
        .map_err(|e| MemoryError::Unavailable(e.to_string()))?
}

fn unexpected() -> MemoryError {
    MemoryError::Unavailable("the memory actor answered another request".into())
}

#[async_trait]
impl Memory for Addr<MemoryActor> {
    async fn record_evaluation(
        &self,
        meta: Metadata,
        evaluation_id: String,
        agent: Option<String>,
        version: Option<String>,
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
        match ask(self, request).await? {
            Reply::Evaluation(record) => Ok(record),
            _ => Err(unexpected()),
        }
    }

    async fn repair_version_evaluated(
        &self,
        meta: Metadata,
        evaluation_id: String,
        agent: String,
        suite: String,
        record: EvaluationRecord,
    ) -> Result<(), MemoryError> {
        let request = Request::RepairVersionEvaluated {
            meta,
            evaluation_id,
            agent,
            suite,
            record,
        };
        ask(self, request).await.map(|_| ())
    }

    async fn store_strategy(
        &self,
        meta: Metadata,
        strategy: StrategyStored,
    ) -> Result<(), MemoryError> {
        ask(self, Request::StoreStrategy { meta, strategy })
            .await
            .map(|_| ())
    }

    async fn record_outcome(
        &self,
        meta: Metadata,
        used: StrategyUse,
        rule: PruneRule,
    ) -> Result<bool, MemoryError> {
        match ask(self, Request::RecordOutcome { meta, used, rule }).await? {
            Reply::Pruned(pruned) => Ok(pruned),
            _ => Err(unexpected()),
        }
    }
}
