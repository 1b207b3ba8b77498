//! What a sandbox is asked to do and what it reports back — the contract shared
//! by every backend and by everyone who runs code (benchmark runner, proposers).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A host path made visible inside the sandbox. Always read-only: the only
/// writable place a payload gets is its scratch dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub host: PathBuf,
    pub sandbox: PathBuf,
}

/// Resource limits. `None` means "the backend's default", never "unlimited".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes of memory (RSS + page cache charged to the payload).
    pub memory_bytes: u64,
    /// CPU quota in cores (0.5 = half a core).
    pub cpus: f64,
    /// Maximum number of processes/threads alive at once.
    pub pids: u64,
    /// Wall-clock limit; the whole process tree is killed when it passes.
    pub timeout: Duration,
    /// Cap on captured stdout and on captured stderr, each.
    pub output_bytes: u64,
    /// Size of the writable scratch dir (tmpfs), and the largest file.
    pub scratch_bytes: u64,
    /// Network namespace with no interfaces unless true.
    pub network: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 512 * 1024 * 1024,
            cpus: 1.0,
            pids: 64,
            timeout: Duration::from_secs(30),
            output_bytes: 1024 * 1024,
            scratch_bytes: 64 * 1024 * 1024,
            network: false,
        }
    }
}

/// One execution request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// argv; `command[0]` is resolved inside the sandbox's PATH.
    pub command: Vec<String>,
    /// Working directory inside the sandbox (defaults to the scratch dir).
    pub workdir: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    /// Read-only mounts: the version's code tree, the task input, ...
    pub mounts: Vec<Mount>,
    /// Bytes fed to the payload's stdin.
    pub stdin: Vec<u8>,
    pub limits: Limits,
}

impl Job {
    pub fn new<S: Into<String>>(command: impl IntoIterator<Item = S>) -> Self {
        Self {
            command: command.into_iter().map(Into::into).collect(),
            workdir: None,
            env: BTreeMap::new(),
            mounts: Vec::new(),
            stdin: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// How the payload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    Ok,
    NonZeroExit,
    Timeout,
    OutOfMemory,
    Signaled,
    SetupError,
}

/// What happened. Outputs are capped at `Limits::output_bytes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecResult {
    pub status: ExecStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub wall: Duration,
    pub cpu: Duration,
    pub peak_memory_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A limit the caller asked for cannot be enforced here; we refuse rather
    /// than run weaker.
    #[error("cannot enforce {limit}: {reason}")]
    Unenforceable { limit: String, reason: String },
    #[error("sandbox backend unavailable: {0}")]
    Unavailable(String),
    #[error("sandbox setup failed: {0}")]
    Setup(String),
    #[error("cancelled")]
    Cancelled,
}

/// A backend (or the supervisor in front of backends).
pub trait Executor: Send + Sync {
    fn execute(
        &self,
        job: Job,
    ) -> impl std::future::Future<Output = Result<ExecResult, SandboxError>> + Send;
}
