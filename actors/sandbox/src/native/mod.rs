//! The `native` backend: Linux namespaces, cgroups, Landlock and seccomp, with
//! no daemon and no helper binary. The default on Linux.
//!
//! Recipe (see docs/sandbox.md): a fresh user namespace in which the payload is
//! uid 1000, mapped to an unprivileged host uid (65534 when dgm runs as root,
//! the caller's own uid otherwise) — never host uid 0; new mount, pid, ipc,
//! uts, cgroup and (unless asked otherwise) network namespaces; a curated
//! read-only root on a tmpfs (system dirs bound read-only, a synthetic /etc,
//! minimal /dev, a fresh /proc with /proc/sys read-only) and a size-limited
//! tmpfs scratch at /tmp; memory, pids and CPU limits in a per-execution
//! cgroup; Landlock; a seccomp denylist; a wall-clock timeout that kills the
//! pid namespace (and so the whole tree); output capped with truncation flags.

mod cgroup;
mod child;
mod landlock;
mod netns;
mod seccomp;
mod trace;

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::job::{ExecResult, ExecStatus, Executor, Job, Limits, SandboxError};
use child::{Op, Plan, Stage};

pub use cgroup::Layout as CgroupLayout;

/// Host uid/gid the payload runs as when dgm itself is root.
pub const DEFAULT_HOST_ID_WHEN_ROOT: u32 = 65534;

const SYSTEM_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib64", "lib32", "libx32"];
/// What a payload sees of the host's /etc; nothing else (no shadow, no ssh keys).
const ETC_ENTRIES: &[&str] = &[
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "localtime",
    "nsswitch.conf",
    "os-release",
    "python3",
    "python3.11",
    "python3.12",
    "python3.13",
    "ssl",
    "ca-certificates",
    "mime.types",
];
const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom"];
/// Sandbox paths a job mount may not shadow.
const RESERVED: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/dev", "/proc",
];
/// Stack of the payload process until its `execve`.
const PAYLOAD_STACK: usize = 256 * 1024;
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Settings of the native backend.
#[derive(Debug, Clone)]
pub struct NativeConfig {
    /// Host uid and gid of the payload when dgm runs as root.
    pub host_id_when_root: u32,
    /// Refuse to run where the kernel has no Landlock (otherwise: warn once).
    pub require_landlock: bool,
    /// Name of the cgroup directory (under dgm's own cgroup) that holds one
    /// child cgroup per execution.
    pub cgroup_subdir: String,
}

impl Default for NativeConfig {
    fn default() -> Self {
        Self {
            host_id_when_root: DEFAULT_HOST_ID_WHEN_ROOT,
            require_landlock: false,
            cgroup_subdir: "dgm-sandbox".into(),
        }
    }
}

/// The native backend. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NativeSandbox {
    config: NativeConfig,
    layout: cgroup::Layout,
    landlock_abi: Option<u32>,
}

fn setup(msg: impl Into<String>) -> SandboxError {
    SandboxError::Setup(msg.into())
}

fn cstr(s: impl AsRef<[u8]>) -> Result<CString, SandboxError> {
    CString::new(s.as_ref().to_vec())
        .map_err(|_| setup("a path, argument or variable contains a NUL byte"))
}

fn cpath(p: &Path) -> Result<CString, SandboxError> {
    cstr(p.as_os_str().as_bytes())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds that we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(setup(format!("pipe: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: fresh fds from pipe2.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: &OwnedFd) {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

fn errno_text(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

impl NativeSandbox {
    /// Detects cgroups and Landlock. Fails (with a clear reason) where the
    /// limits cannot be enforced.
    pub fn new() -> Result<Self, SandboxError> {
        Self::with_config(NativeConfig::default())
    }

    pub fn with_config(config: NativeConfig) -> Result<Self, SandboxError> {
        if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            return Err(SandboxError::Unavailable(
                "the native sandbox supports x86_64 and aarch64 Linux only".into(),
            ));
        }
        let layout = cgroup::Layout::detect(&config.cgroup_subdir)?;
        layout.prepare()?;
        netns::start();
        let landlock_abi = landlock::abi();
        if landlock_abi.is_none() {
            if config.require_landlock {
                return Err(SandboxError::Unenforceable {
                    limit: "landlock".into(),
                    reason: "this kernel has no Landlock (needs Linux 5.13+ with lsm=landlock)"
                        .into(),
                });
            }
            tracing::warn!("Landlock is not available; the native sandbox runs without it");
        }
        Ok(Self {
            config,
            layout,
            landlock_abi,
        })
    }

    /// The Landlock ABI in use, if any.
    pub fn landlock_abi(&self) -> Option<u32> {
        self.landlock_abi
    }

    pub fn cgroup_layout(&self) -> &CgroupLayout {
        &self.layout
    }

    async fn run(&self, job: Job) -> Result<ExecResult, SandboxError> {
        if job.command.is_empty() {
            return Err(setup("empty command"));
        }
        let limits = job.limits.clone();
        if limits.timeout.is_zero() {
            return Err(SandboxError::Unenforceable {
                limit: "timeout".into(),
                reason: "a zero timeout".into(),
            });
        }
        let tr = trace::Trace::new();
        cgroup::validate(&limits)?;

        let (stdin_r, stdin_w) = pipe()?;
        let (stdout_r, stdout_w) = pipe()?;
        let (stderr_r, stderr_w) = pipe()?;
        let (sync_r, sync_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (status_r, status_w) = pipe()?;
        let fds = [
            stdin_r.as_raw_fd(),
            stdout_w.as_raw_fd(),
            stderr_w.as_raw_fd(),
            sync_r.as_raw_fd(),
            err_w.as_raw_fd(),
            status_w.as_raw_fd(),
        ];
        let (mut plan, descriptions) = self.plan(&job, fds)?;
        plan.trace = tr.page();
        tr.mark(trace::Mark::Plan);

        let mut flags = libc::CLONE_NEWUSER
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWCGROUP
            | libc::CLONE_PIDFD;
        // A fresh network namespace: one made ahead of time if ready (entered
        // by this thread for the clone only), else a new one at the clone.
        let ready_netns = if limits.network { None } else { netns::take() };
        let entered = ready_netns.as_ref().and_then(netns::Entered::enter);
        if !limits.network && entered.is_none() {
            flags |= libc::CLONE_NEWNET;
        }
        let started = Instant::now();
        let mut pidfd: libc::c_int = -1;
        // SAFETY: a fork-like clone (no new stack). The child runs only
        // `init_main`, which makes raw syscalls on memory prepared above and
        // never returns.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flags | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                &mut pidfd as *mut libc::c_int,
                0usize,
                0usize,
            )
        };
        if pid == 0 {
            // SAFETY: we are the freshly cloned child.
            unsafe { child::init_main(&mut plan) }
        }
        drop(entered);
        drop(ready_netns);
        if pid < 0 {
            let e = std::io::Error::last_os_error();
            return Err(SandboxError::Unavailable(format!(
                "cannot create the sandbox namespaces ({e}); the native backend needs \
                 unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, \
                 user.max_user_namespaces > 0)"
            )));
        }
        tr.mark(trace::Mark::Cloned);
        let pid = pid as libc::pid_t;
        // SAFETY: CLONE_PIDFD stored a fresh fd we now own.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        let mut guard = Running {
            pid,
            pidfd: Some(pidfd),
            reaped: false,
            cgroup: None,
        };
        // `sync_r` stays open here until init has both bytes: should init
        // die first, our writes land in the pipe instead of raising SIGPIPE
        // (which an embedding program may not ignore).
        drop((stdin_r, stdout_w, stderr_w, err_w, status_w));
        drop(plan);

        // Identity maps, then let init build the root while we create the
        // cgroup and move init into it; init forks the payload only after
        // the second byte, so the payload never runs outside its limits. (An
        // error here drops the guard, which kills init and removes the
        // cgroup.)
        let mut sync_w = std::fs::File::from(sync_w);
        let release = |w: &mut std::fs::File| {
            use std::io::Write;
            w.write_all(&[1])
                .map_err(|e| setup(format!("cannot start the sandbox: {e}")))
        };
        self.write_id_maps(pid)?;
        tr.mark(trace::Mark::IdMaps);
        release(&mut sync_w)?;
        tr.mark(trace::Mark::Released);
        let name = format!("dgm-{}", uuid::Uuid::new_v4().simple());
        let limited = (|| {
            let cg = guard
                .cgroup
                .insert(cgroup::Cgroup::create(&self.layout, &name, &limits)?);
            tr.mark(trace::Mark::Cgroup);
            cg.add(pid)?;
            tr.mark(trace::Mark::CgroupAdd);
            release(&mut sync_w)
        })();
        drop((sync_w, sync_r));
        if let Err(e) = limited {
            // If init failed on its own meanwhile (then `add` finds no such
            // process), its reason is the one to report.
            if let Some(fd) = &guard.pidfd {
                pidfd_kill(fd);
            }
            guard.reap();
            return Err(match read_record(err_r) {
                Some((stage, index, errno)) => init_failure(stage, index, errno, &descriptions),
                None => e,
            });
        }

        for fd in [&stdin_w, &stdout_r, &stderr_r] {
            set_nonblocking(fd);
        }
        let stdin_task = {
            let data = job.stdin.clone();
            let mut tx = tokio::net::unix::pipe::Sender::from_owned_fd(stdin_w)
                .map_err(|e| setup(format!("stdin pipe: {e}")))?;
            tokio::spawn(async move {
                if !data.is_empty() {
                    let _ = tx.write_all(&data).await;
                }
            })
        };
        let cap = limits.output_bytes;
        let out_task = tokio::spawn(read_capped(stdout_r, cap));
        let err_task = tokio::spawn(read_capped(stderr_r, cap));

        let pidfd = guard.pidfd.take().ok_or_else(|| setup("pidfd missing"))?;
        // SAFETY: the AsyncFd owns the pidfd and we never replace or close it
        // while registered; it is taken back with `into_inner` below.
        let afd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
            .map_err(|e| setup(format!("pidfd: {e}")))?;
        let mut timed_out = false;
        let wait = async {
            let _ = afd.readable().await;
        };
        if tokio::time::timeout(limits.timeout, wait).await.is_err() {
            timed_out = true;
            pidfd_kill(afd.get_ref());
            let _ = afd.readable().await;
        }
        tr.mark(trace::Mark::Exited);
        guard.pidfd = Some(afd.into_inner());
        let (init_status, rusage) = guard.reap();
        tr.mark(trace::Mark::Reaped);
        let wall = started.elapsed();
        stdin_task.abort();

        let err_record = read_record(err_r);
        let payload_status = read_status(status_r);
        let (stdout, stdout_truncated) = join_reader(out_task).await;
        let (stderr, stderr_truncated) = join_reader(err_task).await;
        tr.mark(trace::Mark::Outputs);
        let stats = guard.cgroup.as_ref().map(|c| c.stats()).unwrap_or_default();
        if let Some(mut cg) = guard.cgroup.take() {
            cg.remove();
        }
        tr.mark(trace::Mark::Cleaned);
        tr.report(&job.command[0]);

        if let Some((stage, index, errno)) = err_record {
            if stage == Some(Stage::Exec) {
                let msg = format!(
                    "dgm-sandbox: cannot execute `{}`: {}\n",
                    job.command[0],
                    errno_text(errno)
                );
                return Ok(ExecResult {
                    status: ExecStatus::SetupError,
                    exit_code: Some(127),
                    signal: None,
                    stdout,
                    stderr: msg.into_bytes(),
                    stdout_truncated,
                    stderr_truncated: false,
                    wall,
                    cpu: Duration::ZERO,
                    peak_memory_bytes: stats.peak_memory,
                });
            }
            return Err(init_failure(stage, index, errno, &descriptions));
        }

        let cpu = stats
            .cpu_ns
            .map(Duration::from_nanos)
            .unwrap_or_else(|| rusage_cpu(&rusage));
        let peak_memory_bytes = stats
            .peak_memory
            .or(Some(rusage.ru_maxrss.max(0) as u64 * 1024));
        let oom = stats.oom_kills > 0;
        let (status, exit_code, signal) = if timed_out {
            (ExecStatus::Timeout, None, Some(libc::SIGKILL))
        } else {
            match payload_status {
                Some(st) if libc::WIFEXITED(st) => {
                    let code = libc::WEXITSTATUS(st);
                    let status = if code == 0 {
                        ExecStatus::Ok
                    } else if oom {
                        ExecStatus::OutOfMemory
                    } else {
                        ExecStatus::NonZeroExit
                    };
                    (status, Some(code), None)
                }
                Some(st) if libc::WIFSIGNALED(st) => {
                    let sig = libc::WTERMSIG(st);
                    let status = if oom && sig == libc::SIGKILL {
                        ExecStatus::OutOfMemory
                    } else {
                        ExecStatus::Signaled
                    };
                    (status, None, Some(sig))
                }
                _ => {
                    // init itself died: killed by the OOM killer or from outside.
                    let sig = if libc::WIFSIGNALED(init_status) {
                        Some(libc::WTERMSIG(init_status))
                    } else {
                        None
                    };
                    if oom {
                        (ExecStatus::OutOfMemory, None, sig)
                    } else if sig.is_some() {
                        (ExecStatus::Signaled, None, sig)
                    } else {
                        return Err(setup(format!(
                            "the sandbox init exited unexpectedly (status {init_status:#x})"
                        )));
                    }
                }
            }
        };
        Ok(ExecResult {
            status,
            exit_code,
            signal,
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            wall,
            cpu,
            peak_memory_bytes,
        })
    }

    fn write_id_maps(&self, pid: libc::pid_t) -> Result<(), SandboxError> {
        // SAFETY: getters without preconditions.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let (host_uid, host_gid) = if euid == 0 {
            (self.config.host_id_when_root, self.config.host_id_when_root)
        } else {
            (euid, egid)
        };
        let id = child::SANDBOX_ID;
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let w = |file: &str, text: String| -> Result<(), SandboxError> {
            std::fs::write(proc.join(file), text)
                .map_err(|e| setup(format!("writing /proc/{pid}/{file}: {e}")))
        };
        w("uid_map", format!("{id} {host_uid} 1\n"))?;
        if euid != 0 {
            w("setgroups", "deny".into())?;
        }
        w("gid_map", format!("{id} {host_gid} 1\n"))?;
        Ok(())
    }

    /// Builds the child's plan. Returns it with a description of each op, for
    /// error messages.
    fn plan(&self, job: &Job, fds: [libc::c_int; 6]) -> Result<(Plan, Vec<String>), SandboxError> {
        let limits = &job.limits;
        let root = Path::new("/tmp");
        let mut ops: Vec<Op> = Vec::new();
        let mut desc: Vec<String> = Vec::new();
        let mut sources: Vec<CString> = Vec::new();
        let at = |p: &str| root.join(p.trim_start_matches('/'));

        macro_rules! op {
            ($op:expr, $($d:tt)*) => {{
                ops.push($op);
                desc.push(format!($($d)*));
            }};
        }

        op!(
            Op::Tmpfs {
                target: cpath(root)?,
                data: cstr("size=4m,nr_inodes=4096,mode=755")?,
            },
            "mounting the root tmpfs"
        );
        for d in SYSTEM_DIRS {
            let host = Path::new("/").join(d);
            let Ok(meta) = std::fs::symlink_metadata(&host) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&host)
                    .map_err(|e| setup(format!("{}: {e}", host.display())))?;
                op!(
                    Op::Symlink {
                        target: cpath(&target)?,
                        link: cpath(&at(d))?,
                    },
                    "linking /{d}"
                );
            } else if meta.is_dir() {
                sources.push(cpath(&host)?);
                op!(Op::Mkdir(cpath(&at(d))?), "creating /{d}");
                op!(
                    Op::Bind {
                        source: sources.len() - 1,
                        target: cpath(&at(d))?,
                    },
                    "binding /{d}"
                );
                op!(Op::ReadOnly(cpath(&at(d))?), "making /{d} read-only");
            }
        }

        // /etc: a few host entries and a synthetic passwd/group.
        op!(Op::Mkdir(cpath(&at("etc"))?), "creating /etc");
        for name in ETC_ENTRIES.iter().copied().chain(
            limits
                .network
                .then_some(["resolv.conf", "hosts"])
                .into_iter()
                .flatten(),
        ) {
            let host = Path::new("/etc").join(name);
            let Ok(meta) = std::fs::symlink_metadata(&host) else {
                continue;
            };
            let inside = at(&format!("etc/{name}"));
            if meta.file_type().is_symlink() {
                if let Ok(target) = std::fs::read_link(&host) {
                    op!(
                        Op::Symlink {
                            target: cpath(&target)?,
                            link: cpath(&inside)?,
                        },
                        "linking /etc/{name}"
                    );
                }
            } else if meta.is_dir() {
                sources.push(cpath(&host)?);
                op!(Op::Mkdir(cpath(&inside)?), "creating /etc/{name}");
                op!(
                    Op::Bind {
                        source: sources.len() - 1,
                        target: cpath(&inside)?,
                    },
                    "binding /etc/{name}"
                );
                op!(
                    Op::ReadOnly(cpath(&inside)?),
                    "making /etc/{name} read-only"
                );
            } else if meta.is_file()
                && meta.len() <= 4 * 1024 * 1024
                && let Ok(data) = std::fs::read(&host)
            {
                op!(
                    Op::WriteFile {
                        path: cpath(&inside)?,
                        data,
                    },
                    "writing /etc/{name}"
                );
            }
        }
        let id = child::SANDBOX_ID;
        let files: [(&str, String); 3] = [
            (
                "passwd",
                format!(
                    "root:x:0:0:root:/:/usr/sbin/nologin\nsandbox:x:{id}:{id}:sandbox:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
                ),
            ),
            (
                "group",
                format!("root:x:0:\nsandbox:x:{id}:\nnogroup:x:65534:\n"),
            ),
            ("hostname", "dgm-sandbox\n".into()),
        ];
        for (name, text) in files {
            op!(
                Op::WriteFile {
                    path: cpath(&at(&format!("etc/{name}")))?,
                    data: text.into_bytes(),
                },
                "writing /etc/{name}"
            );
        }
        if !limits.network {
            op!(
                Op::WriteFile {
                    path: cpath(&at("etc/hosts"))?,
                    data: b"127.0.0.1 localhost dgm-sandbox\n::1 localhost\n".to_vec(),
                },
                "writing /etc/hosts"
            );
        }

        // /dev: a tmpfs with a few device nodes bound from the host.
        op!(Op::Mkdir(cpath(&at("dev"))?), "creating /dev");
        op!(
            Op::Tmpfs {
                target: cpath(&at("dev"))?,
                data: cstr("size=64k,nr_inodes=64,mode=755")?,
            },
            "mounting /dev"
        );
        for n in DEV_NODES {
            let host = Path::new("/dev").join(n);
            if !host.exists() {
                continue;
            }
            sources.push(cpath(&host)?);
            let inside = at(&format!("dev/{n}"));
            op!(Op::Touch(cpath(&inside)?), "creating /dev/{n}");
            op!(
                Op::Bind {
                    source: sources.len() - 1,
                    target: cpath(&inside)?,
                },
                "binding /dev/{n}"
            );
        }
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            op!(
                Op::Symlink {
                    target: cstr(target)?,
                    link: cpath(&at(&format!("dev/{link}")))?,
                },
                "linking /dev/{link}"
            );
        }
        op!(Op::Mkdir(cpath(&at("dev/shm"))?), "creating /dev/shm");
        op!(
            Op::Tmpfs {
                target: cpath(&at("dev/shm"))?,
                data: cstr(format!(
                    "size={},nr_inodes=1024,mode=1777",
                    limits.scratch_bytes.clamp(4096, 64 * 1024 * 1024)
                ))?,
            },
            "mounting /dev/shm"
        );

        // A fresh /proc for the new pid namespace, its kernel knobs read-only.
        op!(Op::Mkdir(cpath(&at("proc"))?), "creating /proc");
        op!(Op::Proc(cpath(&at("proc"))?), "mounting /proc");
        for p in ["proc/sys", "proc/sysrq-trigger", "proc/irq", "proc/bus"] {
            let inside = at(p);
            op!(
                Op::SelfBindReadOnly(cpath(&inside)?),
                "making /{p} read-only"
            );
        }

        // Scratch.
        if limits.scratch_bytes < 4096 {
            return Err(SandboxError::Unenforceable {
                limit: "scratch".into(),
                reason: "less than 4 KiB".into(),
            });
        }
        op!(Op::Mkdir(cpath(&at("tmp"))?), "creating /tmp");
        op!(
            Op::Tmpfs {
                target: cpath(&at("tmp"))?,
                data: cstr(format!(
                    "size={},nr_inodes=65536,mode=1777,uid={id},gid={id}",
                    limits.scratch_bytes
                ))?,
            },
            "mounting the scratch tmpfs"
        );

        // The job's read-only mounts.
        for m in &job.mounts {
            let inside = clean_sandbox_path(&m.sandbox)?;
            if RESERVED
                .iter()
                .any(|r| inside == Path::new(r) || inside.starts_with(r))
                || inside == Path::new("/")
            {
                return Err(setup(format!(
                    "cannot mount over {} inside the sandbox (reserved)",
                    inside.display()
                )));
            }
            let meta = std::fs::metadata(&m.host)
                .map_err(|e| setup(format!("mount source {}: {e}", m.host.display())))?;
            let mut acc = root.to_path_buf();
            let comps: Vec<_> = inside.components().skip(1).collect();
            for (i, c) in comps.iter().enumerate() {
                acc.push(c);
                let last = i + 1 == comps.len();
                if last && !meta.is_dir() {
                    op!(Op::Touch(cpath(&acc)?), "creating {}", inside.display());
                } else {
                    op!(Op::Mkdir(cpath(&acc)?), "creating {}", acc.display());
                }
            }
            sources.push(cpath(&m.host)?);
            op!(
                Op::Bind {
                    source: sources.len() - 1,
                    target: cpath(&acc)?,
                },
                "binding {} at {} (it must be readable by others, e.g. chmod -R o+rX)",
                m.host.display(),
                inside.display()
            );
            op!(
                Op::ReadOnly(cpath(&acc)?),
                "making {} read-only",
                inside.display()
            );
        }

        let workdir = match &job.workdir {
            Some(w) => clean_sandbox_path(w)?,
            None => PathBuf::from("/tmp"),
        };
        if workdir.starts_with("/tmp") && workdir != Path::new("/tmp") {
            let mut acc = root.to_path_buf();
            for c in workdir.components().skip(1) {
                acc.push(c);
                op!(
                    Op::Mkdir(cpath(&acc)?),
                    "creating workdir {}",
                    workdir.display()
                );
            }
        }

        // Environment and argv.
        let mut env: std::collections::BTreeMap<String, String> = [
            ("PATH", DEFAULT_PATH),
            ("HOME", "/tmp"),
            ("TMPDIR", "/tmp"),
            ("LANG", "C.UTF-8"),
            ("USER", "sandbox"),
            ("LOGNAME", "sandbox"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.extend(job.env.clone());
        let cmd0 = &job.command[0];
        let exec_candidates = if cmd0.contains('/') {
            vec![cstr(cmd0)?]
        } else {
            env.get("PATH")
                .map(String::as_str)
                .unwrap_or(DEFAULT_PATH)
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| cstr(format!("{}/{cmd0}", d.trim_end_matches('/'))))
                .collect::<Result<_, _>>()?
        };
        let argv = job
            .command
            .iter()
            .map(cstr)
            .collect::<Result<Vec<_>, _>>()?;
        let envp = env
            .iter()
            .map(|(k, v)| {
                if k.contains('=') || k.is_empty() {
                    Err(setup(format!("bad environment variable name {k:?}")))
                } else {
                    cstr(format!("{k}={v}"))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;

        let (landlock, landlock_rules) = match self.landlock_abi {
            Some(abi) => {
                let all = landlock::all_fs(abi);
                let read = landlock::READ_FILE | landlock::READ_DIR | landlock::EXECUTE;
                let dev = (read | landlock::WRITE_FILE | (1 << 14) | (1 << 15)) & all;
                let rules = vec![
                    (cstr("/")?, read & all),
                    (cstr("/tmp")?, all),
                    (cstr("/dev")?, dev),
                    (cstr("/dev/shm")?, all),
                ];
                (Some(landlock::ruleset(abi, limits.network)), rules)
            }
            None => (None, Vec::new()),
        };

        let mut plan = Plan {
            sources,
            source_fds: Vec::new(),
            ops,
            new_root: cpath(root)?,
            hostname: b"dgm-sandbox".to_vec(),
            // SAFETY: no preconditions.
            drop_groups: unsafe { libc::geteuid() } == 0,
            workdir: cpath(&workdir)?,
            exec_candidates,
            argv,
            argv_ptrs: Vec::new(),
            envp,
            envp_ptrs: Vec::new(),
            rlimits: vec![
                (libc::RLIMIT_FSIZE as libc::c_int, limits.scratch_bytes),
                (libc::RLIMIT_CORE as libc::c_int, 0),
                (libc::RLIMIT_NOFILE as libc::c_int, 4096),
            ],
            landlock,
            landlock_rules,
            seccomp: seccomp::program(),
            fds,
            trace: std::ptr::null_mut(),
            payload_stack: vec![0; PAYLOAD_STACK],
        };
        plan.finish();
        Ok((plan, desc))
    }
}

/// The error for a set-up step that failed in the sandbox's init.
fn init_failure(
    stage: Option<Stage>,
    index: u32,
    errno: i32,
    descriptions: &[String],
) -> SandboxError {
    let what = match stage {
        Some(Stage::Op) => descriptions
            .get(index as usize)
            .cloned()
            .unwrap_or_else(|| "building the root".into()),
        Some(Stage::OpenSource) => format!("opening mount source #{index}"),
        Some(s) => format!("{s:?}"),
        None => "an unknown step".into(),
    };
    setup(format!("{what}: {}", errno_text(errno)))
}

/// An absolute, normalised sandbox path without `..`.
fn clean_sandbox_path(p: &Path) -> Result<PathBuf, SandboxError> {
    if !p.is_absolute() {
        return Err(setup(format!(
            "sandbox path {} is not absolute",
            p.display()
        )));
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => out.push(s),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(setup(format!("sandbox path {} contains `..`", p.display())));
            }
        }
    }
    Ok(out)
}

fn pidfd_kill(pidfd: &OwnedFd) {
    // SAFETY: pidfd_send_signal on a pidfd we own.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        );
    }
}

fn rusage_cpu(r: &libc::rusage) -> Duration {
    let tv =
        |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000);
    tv(r.ru_utime) + tv(r.ru_stime)
}

/// The init process of a sandbox; killed and reaped on drop if still running
/// (a cancelled execution), which tears down its whole pid namespace.
struct Running {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    reaped: bool,
    cgroup: Option<cgroup::Cgroup>,
}

impl Running {
    fn reap(&mut self) -> (i32, libc::rusage) {
        // SAFETY: zeroed rusage is valid; wait4 on our own child.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let mut status = 0;
        loop {
            let r = unsafe { libc::wait4(self.pid, &mut status, 0, &mut ru) };
            if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        self.reaped = true;
        (status, ru)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            if let Some(fd) = &self.pidfd {
                pidfd_kill(fd);
            } else {
                // SAFETY: our unreaped child; the pid cannot have been reused.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
            }
            let _ = self.reap();
        }
        if let Some(mut cg) = self.cgroup.take() {
            cg.remove();
        }
    }
}

async fn read_capped(fd: OwnedFd, cap: u64) -> (Vec<u8>, bool) {
    let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return (Vec::new(), false);
    };
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(out.len());
                if n > room {
                    truncated = true;
                }
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (out, truncated)
}

async fn join_reader(task: tokio::task::JoinHandle<(Vec<u8>, bool)>) -> (Vec<u8>, bool) {
    // Every writer is gone once init has been reaped; the bound only guards
    // against an fd leaked into a sibling sandbox that is being cloned.
    let abort = task.abort_handle();
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(v)) => v,
        _ => {
            abort.abort();
            (Vec::new(), true)
        }
    }
}

fn read_record(fd: OwnedFd) -> Option<(Option<Stage>, u32, i32)> {
    let mut rec = [0u8; 12];
    // SAFETY: reading into a stack buffer from a pipe whose writers are gone.
    let n = unsafe { libc::read(fd.as_raw_fd(), rec.as_mut_ptr() as *mut libc::c_void, 12) };
    if n != 12 {
        return None;
    }
    let word = |i: usize| [rec[i], rec[i + 1], rec[i + 2], rec[i + 3]];
    Some((
        Stage::from_u32(u32::from_ne_bytes(word(0))),
        u32::from_ne_bytes(word(4)),
        i32::from_ne_bytes(word(8)),
    ))
}

fn read_status(fd: OwnedFd) -> Option<i32> {
    let mut b = [0u8; 4];
    // SAFETY: as above.
    let n = unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr() as *mut libc::c_void, 4) };
    (n == 4).then(|| i32::from_ne_bytes(b))
}

impl Executor for NativeSandbox {
    fn execute(
        &self,
        job: Job,
    ) -> impl std::future::Future<Output = Result<ExecResult, SandboxError>> + Send {
        let this = self.clone();
        async move { this.run(job).await }
    }
}

/// Checks the limits the native backend can enforce, without running anything.
pub fn validate_limits(limits: &Limits) -> Result<(), SandboxError> {
    if !(limits.cpus.is_finite() && limits.cpus >= 0.01) {
        return Err(SandboxError::Unenforceable {
            limit: "cpus".into(),
            reason: format!("{} is not a CPU quota (need at least 0.01)", limits.cpus),
        });
    }
    Ok(())
}
