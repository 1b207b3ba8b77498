//! One actix actor per evolving agent: a thin shell that runs its
//! [`Evolution`] when asked and stops it on request.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::prelude::*;
use dgm_sandbox::Executor;

use crate::engine::{Evolution, Observer, Summary};

pub struct AgentActor<E: Executor + 'static> {
    evolution: Arc<Evolution<E>>,
    observer: Arc<dyn Observer>,
}

impl<E: Executor + 'static> AgentActor<E> {
    pub fn new(evolution: Evolution<E>, observer: Arc<dyn Observer>) -> Self {
        Self {
            evolution: Arc::new(evolution),
            observer,
        }
    }
}

impl<E: Executor + 'static> Actor for AgentActor<E> {
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

impl<E: Executor + 'static> Handler<Evolve> for AgentActor<E> {
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

impl<E: Executor + 'static> Handler<Stop> for AgentActor<E> {
    type Result = ();

    fn handle(&mut self, _: Stop, _: &mut Self::Context) {
        self.evolution.stop_flag().store(true, Ordering::SeqCst);
    }
}
