//! The sandbox: runs untrusted code (every candidate version is untrusted) under
//! limits, and reports what happened.
//!
//! `job` holds the contract every backend implements: a [`Job`] goes in, an
//! [`ExecResult`] comes out. Backends ([`native`], [`docker`]) and the
//! [`supervisor`] that queues jobs onto a bounded number of slots live beside
//! it; [`actor`] is the thin actix shell around the supervisor.

pub mod actor;
pub mod docker;
pub mod job;
pub mod native;
pub mod supervisor;

pub use job::{ExecResult, ExecStatus, Executor, Job, Limits, Mount, SandboxError};

/// Which backend runs the payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Linux namespaces, cgroups, Landlock, seccomp (no daemon).
    #[default]
    Native,
    /// A Docker engine reached through its API (bollard).
    Docker,
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "native" => Ok(Backend::Native),
            "docker" => Ok(Backend::Docker),
            other => Err(format!(
                "unknown sandbox backend `{other}` (expected native or docker)"
            )),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Native => "native",
            Backend::Docker => "docker",
        })
    }
}
