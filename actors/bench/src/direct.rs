//! `DirectExecutor`: runs a [`Job`] as a plain subprocess — NO isolation.
//!
//! It exists for the runner's own tests and for trusted local development
//! before a real sandbox backend is configured; never use it on untrusted
//! code. Mounts are emulated by rewriting sandbox paths (`/dgm/agent/...`) in
//! argv, env values and the working directory to their host paths. It honours
//! the wall-clock timeout (killing the whole process group) and the output
//! caps; it does not enforce memory, CPU, pids or network limits, and it
//! reports CPU time from `/proc` only where it can.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use dgm_sandbox::{ExecResult, ExecStatus, Executor, Job, SandboxError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// See the module docs: a subprocess, not a sandbox.
#[derive(Debug, Clone, Default)]
pub struct DirectExecutor;

fn rewrite(s: &str, mounts: &[(String, String)]) -> String {
    let mut out = s.to_string();
    for (sandbox, host) in mounts {
        out = out.replace(sandbox.as_str(), host.as_str());
    }
    out
}

async fn read_capped<R: AsyncRead + Unpin>(r: Option<R>, cap: u64) -> (Vec<u8>, bool) {
    let Some(mut r) = r else {
        return (Vec::new(), false);
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut truncated = false;
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = (cap as usize).saturating_sub(buf.len());
                if n > room {
                    truncated = true;
                }
                buf.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
    (buf, truncated)
}

impl Executor for DirectExecutor {
    async fn execute(&self, job: Job) -> Result<ExecResult, SandboxError> {
        // Longest sandbox path first, so /dgm/agent/x is not eaten by /dgm.
        let mut mounts: Vec<(String, String)> = job
            .mounts
            .iter()
            .map(|m| {
                (
                    m.sandbox.display().to_string(),
                    m.host.display().to_string(),
                )
            })
            .collect();
        mounts.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        let scratch = tempfile::Builder::new()
            .prefix("dgm-direct-")
            .tempdir()
            .map_err(|e| SandboxError::Setup(format!("scratch dir: {e}")))?;
        let Some((prog, args)) = job.command.split_first() else {
            return Err(SandboxError::Setup("empty command".into()));
        };
        let workdir = match &job.workdir {
            Some(w) => PathBuf::from(rewrite(&w.display().to_string(), &mounts)),
            None => scratch.path().to_path_buf(),
        };
        let mut cmd = tokio::process::Command::new(rewrite(prog, &mounts));
        cmd.args(args.iter().map(|a| rewrite(a, &mounts)))
            .current_dir(&workdir)
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .env("HOME", scratch.path())
            .env("TMPDIR", scratch.path())
            .envs(
                job.env
                    .iter()
                    .map(|(k, v)| (k.clone(), rewrite(v, &mounts))),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for var in ["CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN"] {
            if let Ok(v) = std::env::var(var)
                && !job.env.contains_key(var)
            {
                cmd.env(var, v);
            }
        }
        let start = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Ok(ExecResult {
                    status: ExecStatus::SetupError,
                    exit_code: None,
                    signal: None,
                    stdout: Vec::new(),
                    stderr: format!("cannot start `{prog}`: {e}").into_bytes(),
                    stdout_truncated: false,
                    stderr_truncated: false,
                    wall: start.elapsed(),
                    cpu: Default::default(),
                    peak_memory_bytes: None,
                });
            }
        };
        let pid = child.id();
        let stdin = job.stdin.clone();
        let mut child_in = child.stdin.take();
        tokio::spawn(async move {
            if let Some(i) = child_in.as_mut() {
                let _ = i.write_all(&stdin).await;
            }
        });
        let cap = job.limits.output_bytes;
        let out = tokio::spawn(read_capped(child.stdout.take(), cap));
        let err = tokio::spawn(read_capped(child.stderr.take(), cap));
        let waited = tokio::time::timeout(job.limits.timeout, child.wait()).await;
        let (status, exit_code, signal) = match waited {
            Ok(Ok(st)) => {
                use std::os::unix::process::ExitStatusExt;
                match (st.code(), st.signal()) {
                    (Some(0), _) => (ExecStatus::Ok, Some(0), None),
                    (Some(c), _) => (ExecStatus::NonZeroExit, Some(c), None),
                    (None, s) => (ExecStatus::Signaled, None, s),
                }
            }
            Ok(Err(e)) => return Err(SandboxError::Setup(format!("wait: {e}"))),
            Err(_) => (ExecStatus::Timeout, None, Some(9)),
        };
        // Kill the whole group: a timed-out payload, or children it left.
        if let Some(pid) = pid {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = child.kill().await;
        let wall = start.elapsed();
        let (stdout, stdout_truncated) = out.await.unwrap_or_default();
        let (stderr, stderr_truncated) = err.await.unwrap_or_default();
        Ok(ExecResult {
            status,
            exit_code,
            signal,
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            wall,
            cpu: Default::default(),
            peak_memory_bytes: None,
        })
    }
}
