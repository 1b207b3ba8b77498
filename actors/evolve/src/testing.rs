//! Test support for the loop (its tests, end-to-end tests of other crates,
//! the loop-overhead benchmark): an executor that answers at once, as a
//! function of the code it is given, and trajectories to fold.

use std::path::Path;
use std::time::Duration;

use dgm_events::Trajectory;
use dgm_sandbox::{ExecResult, ExecStatus, Executor, Job, SandboxError};

/// Answers every job at once, from the size of one file of the version
/// under test (mounted at `/dgm/agent`): the run time it reports and
/// whether the run crashed are functions of that size. No process starts.
pub struct SizeExecutor {
    /// The file whose size is read, relative to the version's directory.
    pub file: &'static str,
    /// The size when the file is missing.
    pub missing: u64,
    pub wall: fn(u64) -> Duration,
    pub crashes: fn(u64) -> bool,
}

impl SizeExecutor {
    /// Run time = the size in milliseconds; never crashes.
    pub fn millis_per_byte(file: &'static str) -> Self {
        Self {
            file,
            missing: 1_000,
            wall: Duration::from_millis,
            crashes: |_| false,
        }
    }
}

impl Executor for SizeExecutor {
    async fn execute(&self, job: Job) -> Result<ExecResult, SandboxError> {
        let size = job
            .mounts
            .iter()
            .find(|m| m.sandbox == Path::new("/dgm/agent"))
            .and_then(|m| std::fs::metadata(m.host.join(self.file)).ok())
            .map_or(self.missing, |meta| meta.len());
        let crash = (self.crashes)(size);
        let wall = (self.wall)(size);
        Ok(ExecResult {
            status: if crash {
                ExecStatus::NonZeroExit
            } else {
                ExecStatus::Ok
            },
            exit_code: Some(i32::from(crash)),
            signal: None,
            stdout: b"{}".to_vec(),
            stderr: if crash {
                b"Traceback: boom".to_vec()
            } else {
                Vec::new()
            },
            stdout_truncated: false,
            stderr_truncated: false,
            wall,
            cpu: wall,
            peak_memory_bytes: Some(1 << 20),
        })
    }
}

/// A trajectory of `agent`'s `version` on `task`: a failure when it has an
/// error category (with a rationale naming it), else a success.
pub fn trajectory(agent: &str, version: &str, task: &str, category: Option<&str>) -> Trajectory {
    Trajectory {
        agent: agent.into(),
        version: version.into(),
        suite: "s".into(),
        task: task.into(),
        tags: vec![],
        outcome: if category.is_some() {
            "failure"
        } else {
            "success"
        }
        .into(),
        score: Some(if category.is_some() { 0.0 } else { 1.0 }),
        error_category: category.map(Into::into),
        rationale: category.map(|c| format!("because {c}")),
        log_excerpt: String::new(),
        stdout_blob: None,
        stderr_blob: None,
        wall_ms: 1,
        cpu_ms: 1,
        peak_memory_bytes: None,
        tokens: None,
        cost_usd: None,
    }
}
