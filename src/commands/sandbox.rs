//! `dgm sandbox …`: run a command or a source file under the sandbox.
//! (Owned by the sandbox work; wired into the CLI by `src/cli.rs`.)

use std::sync::Arc;

use dgm_sandbox::supervisor::ExecutionListener;

#[derive(Debug, clap::Subcommand)]
pub enum SandboxCommand {}

/// Returns the process exit code dgm should end with.
pub async fn run(cmd: SandboxCommand, _listener: Arc<dyn ExecutionListener>) -> anyhow::Result<i32> {
    match cmd {}
}
