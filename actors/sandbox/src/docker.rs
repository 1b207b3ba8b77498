//! The `docker` backend, for users who have a Docker engine (there is none on
//! the dev machines). Each job is one container: memory = memory+swap, a CPU
//! quota, a pids limit, a read-only root with a tmpfs scratch at /tmp, network
//! none, every capability dropped, no-new-privileges, an unprivileged user.
//! The container is not auto-removed: logs are read first, then it is removed
//! explicitly (a fast container could vanish before its logs were read).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, KillContainerOptions, LogsOptions,
    RemoveContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

use crate::job::{ExecResult, ExecStatus, Executor, Job, SandboxError};

const CPU_PERIOD_US: i64 = 100_000;

/// Settings of the docker backend.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// Image the payload runs in; it must have `python3` for `sandbox exec`.
    pub image: String,
    /// `uid:gid` inside the container.
    pub user: String,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            image: std::env::var("DGM_SANDBOX_IMAGE").unwrap_or_else(|_| "python:3.12-slim".into()),
            user: "65534:65534".into(),
        }
    }
}

/// The docker backend. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DockerSandbox {
    docker: Docker,
    config: DockerConfig,
}

fn unavailable(where_: &str, e: impl std::fmt::Display) -> SandboxError {
    let e = e.to_string().replace('\n', " ");
    SandboxError::Unavailable(format!(
        "no Docker engine reachable at {where_} ({e}); start Docker, set DOCKER_HOST, or use --backend native"
    ))
}

fn api(e: DockerError) -> SandboxError {
    SandboxError::Setup(format!("docker: {}", e.to_string().replace('\n', " ")))
}

impl DockerSandbox {
    /// Connects as the Docker CLI would (`DOCKER_HOST` or the local socket)
    /// and negotiates the API version.
    pub async fn connect_default() -> Result<Self, SandboxError> {
        let host =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let docker = Docker::connect_with_defaults().map_err(|e| unavailable(&host, e))?;
        Self::negotiate(docker, &host, DockerConfig::default()).await
    }

    /// Connects over plain HTTP (`127.0.0.1:2375`, or a test's fake engine).
    pub async fn connect_http(addr: &str, config: DockerConfig) -> Result<Self, SandboxError> {
        let docker = Docker::connect_with_http(addr, 30, bollard::API_DEFAULT_VERSION)
            .map_err(|e| unavailable(addr, e))?;
        Self::negotiate(docker, addr, config).await
    }

    async fn negotiate(
        docker: Docker,
        where_: &str,
        config: DockerConfig,
    ) -> Result<Self, SandboxError> {
        let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
            .await
            .map_err(|_| unavailable(where_, "timed out"))?
            .map_err(|e| unavailable(where_, e))?;
        docker.ping().await.map_err(|e| unavailable(where_, e))?;
        Ok(Self { docker, config })
    }

    /// The container body dgm sends for `job` (public for tests and audits).
    pub fn container_body(&self, job: &Job) -> ContainerCreateBody {
        let l = &job.limits;
        let mut tmpfs = HashMap::new();
        tmpfs.insert(
            "/tmp".to_string(),
            format!("rw,nosuid,nodev,size={},mode=1777", l.scratch_bytes),
        );
        let mut env: Vec<String> = vec!["HOME=/tmp".into(), "TMPDIR=/tmp".into()];
        env.extend(job.env.iter().map(|(k, v)| format!("{k}={v}")));
        let mut cmd = job.command.clone();
        if !job.stdin.is_empty() {
            // No attach: stdin travels base64-encoded in the environment.
            env.push(format!("DGM_STDIN_B64={}", base64(&job.stdin)));
            let mut wrapped: Vec<String> = vec![
                "/bin/sh".into(),
                "-c".into(),
                "printf %s \"$DGM_STDIN_B64\" | base64 -d | { unset DGM_STDIN_B64; exec \"$@\"; }"
                    .into(),
                "sh".into(),
            ];
            wrapped.append(&mut cmd);
            cmd = wrapped;
        }
        ContainerCreateBody {
            image: Some(self.config.image.clone()),
            cmd: Some(cmd),
            env: Some(env),
            user: Some(self.config.user.clone()),
            working_dir: Some(
                job.workdir
                    .as_ref()
                    .map(|w| w.display().to_string())
                    .unwrap_or_else(|| "/tmp".into()),
            ),
            network_disabled: Some(!l.network),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            tty: Some(false),
            host_config: Some(HostConfig {
                memory: Some(l.memory_bytes as i64),
                memory_swap: Some(l.memory_bytes as i64),
                cpu_period: Some(CPU_PERIOD_US),
                cpu_quota: Some((l.cpus * CPU_PERIOD_US as f64).round() as i64),
                pids_limit: Some(l.pids as i64),
                readonly_rootfs: Some(true),
                tmpfs: Some(tmpfs),
                network_mode: Some(if l.network {
                    "bridge".into()
                } else {
                    "none".into()
                }),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                auto_remove: Some(false),
                privileged: Some(false),
                init: Some(true),
                binds: Some(
                    job.mounts
                        .iter()
                        .map(|m| format!("{}:{}:ro", m.host.display(), m.sandbox.display()))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn run(&self, job: Job) -> Result<ExecResult, SandboxError> {
        if job.command.is_empty() {
            return Err(SandboxError::Setup("empty command".into()));
        }
        if !(job.limits.cpus.is_finite() && job.limits.cpus >= 0.01) {
            return Err(SandboxError::Unenforceable {
                limit: "cpus".into(),
                reason: format!("{} is not a CPU quota", job.limits.cpus),
            });
        }
        let name = format!("dgm-{}", uuid::Uuid::new_v4().simple());
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                self.container_body(&job),
            )
            .await
            .map_err(api)?;
        let mut guard = Remover {
            docker: self.docker.clone(),
            id: created.id.clone(),
            armed: true,
        };
        let id = created.id.clone();
        let started = Instant::now();
        self.docker.start_container(&id, None).await.map_err(api)?;

        let mut wait = self.docker.wait_container(
            &id,
            Some(WaitContainerOptions {
                condition: "not-running".into(),
            }),
        );
        let waited = tokio::time::timeout(job.limits.timeout, wait.next()).await;
        let (timed_out, exit_code) = match waited {
            Err(_) => {
                let _ = self
                    .docker
                    .kill_container(
                        &id,
                        Some(KillContainerOptions {
                            signal: "SIGKILL".into(),
                        }),
                    )
                    .await;
                (true, None)
            }
            Ok(Some(Ok(resp))) => (false, Some(resp.status_code)),
            // bollard reports a non-zero exit as an error.
            Ok(Some(Err(DockerError::DockerContainerWaitError { code, .. }))) => {
                (false, Some(code))
            }
            Ok(Some(Err(e))) => return Err(api(e)),
            Ok(None) => {
                return Err(SandboxError::Setup(
                    "docker: wait ended without a status".into(),
                ));
            }
        };
        let wall = started.elapsed();

        let oom = self
            .docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|i| i.state)
            .and_then(|s| s.oom_killed)
            .unwrap_or(false);

        // Logs before removal.
        let cap = usize::try_from(job.limits.output_bytes).unwrap_or(usize::MAX);
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let (mut out_trunc, mut err_trunc) = (false, false);
        let mut logs = self.docker.logs(
            &id,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                follow: false,
                ..Default::default()
            }),
        );
        while let Some(item) = logs.next().await {
            let (buf, trunc, msg) = match item.map_err(api)? {
                bollard::container::LogOutput::StdOut { message } => {
                    (&mut stdout, &mut out_trunc, message)
                }
                bollard::container::LogOutput::StdErr { message } => {
                    (&mut stderr, &mut err_trunc, message)
                }
                bollard::container::LogOutput::Console { message } => {
                    (&mut stdout, &mut out_trunc, message)
                }
                bollard::container::LogOutput::StdIn { .. } => continue,
            };
            let room = cap.saturating_sub(buf.len());
            if msg.len() > room {
                *trunc = true;
            }
            buf.extend_from_slice(&msg[..msg.len().min(room)]);
        }
        guard.armed = false;
        self.docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(api)?;

        let code = exit_code.map(|c| c as i32);
        let (status, signal) = if timed_out {
            (ExecStatus::Timeout, Some(9))
        } else if oom {
            (ExecStatus::OutOfMemory, Some(9))
        } else {
            match code {
                Some(0) => (ExecStatus::Ok, None),
                Some(c) if c > 128 && c < 160 => (ExecStatus::Signaled, Some(c - 128)),
                _ => (ExecStatus::NonZeroExit, None),
            }
        };
        Ok(ExecResult {
            status,
            exit_code: if status == ExecStatus::NonZeroExit || status == ExecStatus::Ok {
                code
            } else {
                None
            },
            signal,
            stdout,
            stderr,
            stdout_truncated: out_trunc,
            stderr_truncated: err_trunc,
            wall,
            cpu: Duration::ZERO,
            peak_memory_bytes: None,
        })
    }
}

/// Force-removes the container if the execution is cancelled midway.
struct Remover {
    docker: Docker,
    id: String,
    armed: bool,
}

impl Drop for Remover {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let docker = self.docker.clone();
        let id = std::mem::take(&mut self.id);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = docker
                    .remove_container(
                        &id,
                        Some(RemoveContainerOptions {
                            force: true,
                            v: true,
                            ..Default::default()
                        }),
                    )
                    .await;
            });
        }
    }
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Executor for DockerSandbox {
    fn execute(
        &self,
        job: Job,
    ) -> impl std::future::Future<Output = Result<ExecResult, SandboxError>> + Send {
        let this = self.clone();
        async move { this.run(job).await }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
    }
}
