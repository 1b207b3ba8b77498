//! `SandboxSupervisorActor`: the actix shell around [`Supervisor`]. It only
//! forwards messages; all behaviour lives in the plain-Rust supervisor.

use actix::{Actor, Context, Handler, Message, ResponseFuture};

use crate::job::{ExecResult, Executor, Job, SandboxError};
use crate::supervisor::Supervisor;

pub struct SandboxSupervisorActor {
    supervisor: Supervisor,
}

impl SandboxSupervisorActor {
    pub fn new(supervisor: Supervisor) -> Self {
        Self { supervisor }
    }
}

impl Actor for SandboxSupervisorActor {
    type Context = Context<Self>;
}

/// Run a job (the supervisor picks the execution id).
#[derive(Debug, Message)]
#[rtype(result = "Result<ExecResult, SandboxError>")]
pub struct Execute(pub Job);

/// Run a job under a caller-chosen execution id.
#[derive(Debug, Message)]
#[rtype(result = "Result<ExecResult, SandboxError>")]
pub struct ExecuteWithId(pub String, pub Job);

/// Cancel an execution; answers whether it was found.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct Cancel(pub String);

impl Handler<Execute> for SandboxSupervisorActor {
    type Result = ResponseFuture<Result<ExecResult, SandboxError>>;

    fn handle(&mut self, msg: Execute, _: &mut Context<Self>) -> Self::Result {
        let sup = self.supervisor.clone();
        Box::pin(async move { sup.execute(msg.0).await })
    }
}

impl Handler<ExecuteWithId> for SandboxSupervisorActor {
    type Result = ResponseFuture<Result<ExecResult, SandboxError>>;

    fn handle(&mut self, msg: ExecuteWithId, _: &mut Context<Self>) -> Self::Result {
        let sup = self.supervisor.clone();
        Box::pin(async move { sup.execute_with_id(msg.0, msg.1).await })
    }
}

impl Handler<Cancel> for SandboxSupervisorActor {
    type Result = bool;

    fn handle(&mut self, msg: Cancel, _: &mut Context<Self>) -> bool {
        self.supervisor.cancel(&msg.0)
    }
}
