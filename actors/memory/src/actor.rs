//! The memory actor: a thin actix shell around [`MemoryEngine`]. Its
//! address is a [`Memory`] port, so the loop talks to it as to the engine
//! itself.

use std::sync::Arc;

use actix::prelude::*;
use async_trait::async_trait;

use crate::engine::MemoryEngine;
use crate::port::{Memory, MemoryError, Reply, Request};

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

impl Message for Request {
    type Result = Result<Reply, MemoryError>;
}

impl Handler<Request> for MemoryActor {
    type Result = ResponseFuture<Result<Reply, MemoryError>>;

    fn handle(&mut self, request: Request, _: &mut Self::Context) -> Self::Result {
        let engine = self.engine.clone();
        Box::pin(async move { engine.ask(request).await })
    }
}

#[async_trait]
impl Memory for Addr<MemoryActor> {
    async fn ask(&self, request: Request) -> Result<Reply, MemoryError> {
        self.send(request)
            .await
            .map_err(|e| MemoryError::Unavailable(e.to_string()))?
    }
}
