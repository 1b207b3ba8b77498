//! One actix actor per evolving agent: a thin shell that runs its
//! [`Evolution`] when asked and stops it on request.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::prelude::*;

use crate::evolution::{Evolution, Observer};
use crate::summary::Summary;

pub struct AgentActor {
    evolution: Arc<Evolution>,
    observer: Arc<dyn Observer>,
}

impl AgentActor {
    pub fn new(evolution: Evolution, observer: Arc<dyn Observer>) -> Self {
        Self {
            evolution: Arc::new(evolution),
            observer,
        }
    }
}

impl Actor for AgentActor {
    type Context = Context<Self>;
}

/// Run the evolution to the end of its budget.
#[derive(Message)]
#[rtype(result = "Result<Summary, String>")]
pub struct Evolve;

/// Stop after the attempts in flight; the run stays resumable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Evolve> for AgentActor {
    type Result = ResponseFuture<Result<Summary, String>>;

    fn handle(&mut self, _: Evolve, _: &mut Self::Context) -> Self::Result {
        let evolution = self.evolution.clone();
        let observer = self.observer.clone();
        Box::pin(async move {
            evolution
                .run(observer.as_ref())
                .await
                .map_err(|e| e.to_string())
        })
    }
}

impl Handler<Stop> for AgentActor {
    type Result = ();

    fn handle(&mut self, _: Stop, _: &mut Self::Context) {
        self.evolution.stop_flag().store(true, Ordering::SeqCst);
    }
}
