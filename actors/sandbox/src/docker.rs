//! The `docker` backend (placeholder while the native backend lands).

use crate::job::{ExecResult, Executor, Job, SandboxError};

#[derive(Debug, Clone)]
pub struct DockerSandbox {}

impl DockerSandbox {
    pub async fn connect_default() -> Result<Self, SandboxError> {
        Err(SandboxError::Unavailable(
            "docker backend not built yet".into(),
        ))
    }
}

impl Executor for DockerSandbox {
    fn execute(
        &self,
        _job: Job,
    ) -> impl std::future::Future<Output = Result<ExecResult, SandboxError>> + Send {
        async {
            Err(SandboxError::Unavailable(
                "docker backend not built yet".into(),
            ))
        }
    }
}
