//! Per-execution cgroups: memory, pids and CPU limits, plus the figures the
//! result reports (peak memory, CPU time, OOM kills). Supports the v1 layout
//! (one hierarchy per controller, as on the dev machines) and the v2 unified
//! hierarchy. Every execution gets its own leaf, removed afterwards.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::job::{Limits, SandboxError};

const CPU_PERIOD_US: u64 = 100_000;

/// Where sandbox cgroups are created on this host.
#[derive(Debug, Clone)]
pub enum Layout {
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpu: PathBuf,
        cpuacct: Option<PathBuf>,
    },
    V2 {
        base: PathBuf,
    },
}

fn unenforceable(limit: &str, reason: impl Into<String>) -> SandboxError {
    SandboxError::Unenforceable {
        limit: limit.to_string(),
        reason: reason.into(),
    }
}

/// The cgroup of this process in a v1 controller (or v2 when `ctrl` is "").
fn own_path(proc_cgroup: &str, ctrl: &str) -> Option<String> {
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if ctrl.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == ctrl)
        };
        if matches {
            return Some(path.trim_start_matches('/').to_string());
        }
    }
    None
}

impl Layout {
    /// Finds the hierarchy to use. `DGM_SANDBOX_CGROUP` names a (delegated,
    /// writable) v2 directory to create executions under.
    pub fn detect(subdir: &str) -> Result<Layout, SandboxError> {
        let mounts = fs::read_to_string("/proc/self/mounts")
            .map_err(|e| unenforceable("cgroups", format!("cannot read /proc/self/mounts: {e}")))?;
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        if let Ok(dir) = std::env::var("DGM_SANDBOX_CGROUP") {
            return Ok(Layout::V2 {
                base: PathBuf::from(dir).join(subdir),
            });
        }
        let mut v1 = std::collections::HashMap::new();
        let mut v2_mount = None;
        for line in mounts.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 {
                continue;
            }
            match f[2] {
                "cgroup" => {
                    for opt in f[3].split(',') {
                        if matches!(opt, "memory" | "pids" | "cpu" | "cpuacct") {
                            v1.insert(opt.to_string(), PathBuf::from(f[1]));
                        }
                    }
                }
                "cgroup2" if v2_mount.is_none() || f[1] == "/sys/fs/cgroup" => {
                    v2_mount = Some(PathBuf::from(f[1]));
                }
                _ => {}
            }
        }
        if !v1.is_empty() {
            let dir = |ctrl: &str| -> Result<PathBuf, SandboxError> {
                let mount = v1.get(ctrl).ok_or_else(|| {
                    unenforceable(ctrl, format!("no cgroup v1 `{ctrl}` controller is mounted"))
                })?;
                let rel = own_path(&own, ctrl).unwrap_or_default();
                Ok(mount.join(rel).join(subdir))
            };
            let layout = Layout::V1 {
                memory: dir("memory")?,
                pids: dir("pids")?,
                cpu: dir("cpu")?,
                cpuacct: dir("cpuacct").ok(),
            };
            return Ok(layout);
        }
        let Some(mount) = v2_mount else {
            return Err(unenforceable(
                "memory, pids and cpu limits",
                "no cgroup filesystem is mounted",
            ));
        };
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(unenforceable(
                "memory, pids and cpu limits",
                "cgroup v2 needs a delegated cgroup for an unprivileged user: \
                 set DGM_SANDBOX_CGROUP to a writable cgroup directory \
                 (e.g. from `systemd-run --user -p Delegate=yes --scope`)",
            ));
        }
        Ok(Layout::V2 {
            base: mount.join(subdir),
        })
    }

    /// The parent directories executions are created in.
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self {
            Layout::V1 {
                memory,
                pids,
                cpu,
                cpuacct,
            } => [Some(memory), Some(pids), Some(cpu), cpuacct.as_ref()]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
            Layout::V2 { base } => vec![base.clone()],
        }
    }

    /// Creates the per-layout parent directories (idempotent).
    pub fn prepare(&self) -> Result<(), SandboxError> {
        match self {
            Layout::V1 {
                memory,
                pids,
                cpu,
                cpuacct,
            } => {
                for (ctrl, d) in [("memory", memory), ("pids", pids), ("cpu", cpu)] {
                    fs::create_dir_all(d).map_err(|e| {
                        unenforceable(ctrl, format!("cannot create cgroup {}: {e}", d.display()))
                    })?;
                }
                if let Some(d) = cpuacct {
                    let _ = fs::create_dir_all(d);
                }
                // cpu.cfs_quota_us of a child cannot exceed... nothing on v1; ok.
                Ok(())
            }
            Layout::V2 { base } => {
                fs::create_dir_all(base).map_err(|e| {
                    unenforceable(
                        "memory, pids and cpu limits",
                        format!("cannot create cgroup {}: {e}", base.display()),
                    )
                })?;
                if let Some(parent) = base.parent() {
                    let _ = fs::write(parent.join("cgroup.subtree_control"), "+memory +pids +cpu");
                }
                let _ = fs::write(base.join("cgroup.subtree_control"), "+memory +pids +cpu");
                let ctrls =
                    fs::read_to_string(base.join("cgroup.subtree_control")).unwrap_or_default();
                for c in ["memory", "pids", "cpu"] {
                    if !ctrls.split_whitespace().any(|x| x == c) {
                        return Err(unenforceable(
                            c,
                            format!(
                                "the `{c}` controller is not enabled in {}/cgroup.subtree_control",
                                base.display()
                            ),
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}

/// Checks the limits a cgroup can enforce; returns the CPU quota (µs per
/// period).
pub fn validate(limits: &Limits) -> Result<u64, SandboxError> {
    let quota = (limits.cpus * CPU_PERIOD_US as f64).round() as u64;
    if !(limits.cpus.is_finite() && limits.cpus > 0.0) || quota < 1000 {
        return Err(unenforceable(
            "cpus",
            format!("{} is not a CPU quota (need at least 0.01)", limits.cpus),
        ));
    }
    if limits.memory_bytes < 1024 * 1024 {
        return Err(unenforceable("memory", "less than 1 MiB"));
    }
    if limits.pids == 0 {
        return Err(unenforceable("pids", "0 processes"));
    }
    Ok(quota)
}

/// One execution's cgroup(s). Removed by [`Cgroup::remove`] (also on drop).
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
    v2: bool,
    memory: PathBuf,
    pids: PathBuf,
    cpuacct: Option<PathBuf>,
    removed: bool,
}

/// Figures read back after the run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub peak_memory: Option<u64>,
    pub cpu_ns: Option<u64>,
    pub oom_kills: u64,
}

fn write(path: &Path, value: &str, limit: &str) -> Result<(), SandboxError> {
    fs::write(path, value).map_err(|e| {
        unenforceable(
            limit,
            format!("writing {value:?} to {}: {e}", path.display()),
        )
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key)
            .then(|| it.next()?.parse().ok())
            .flatten()
    })
}

impl Cgroup {
    pub fn create(layout: &Layout, name: &str, limits: &Limits) -> Result<Cgroup, SandboxError> {
        let quota = validate(limits)?;
        let mut cg = match layout {
            Layout::V1 {
                memory,
                pids,
                cpu,
                cpuacct,
            } => Cgroup {
                dirs: Vec::new(),
                v2: false,
                memory: memory.join(name),
                pids: pids.join(name),
                cpuacct: cpuacct
                    .as_ref()
                    .map(|d| d.join(name))
                    .or(Some(cpu.join(name))),
                removed: false,
            },
            Layout::V2 { base } => {
                let d = base.join(name);
                Cgroup {
                    dirs: Vec::new(),
                    v2: true,
                    memory: d.clone(),
                    pids: d.clone(),
                    cpuacct: Some(d),
                    removed: false,
                }
            }
        };
        let mut wanted = vec![cg.memory.clone(), cg.pids.clone()];
        if let Layout::V1 { cpu, cpuacct, .. } = layout {
            wanted.push(cpu.join(name));
            if let Some(a) = cpuacct
                && a != cpu
            {
                wanted.push(a.join(name));
            }
        }
        for d in wanted {
            if cg.dirs.contains(&d) {
                continue;
            }
            match fs::create_dir(&d) {
                Ok(()) => cg.dirs.push(d),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => cg.dirs.push(d),
                Err(e) => {
                    return Err(unenforceable(
                        "memory, pids and cpu limits",
                        format!("cannot create cgroup {}: {e}", d.display()),
                    ));
                }
            }
        }
        let mem = limits.memory_bytes.to_string();
        if cg.v2 {
            let d = cg.memory.clone();
            write(&d.join("memory.max"), &mem, "memory")?;
            if d.join("memory.swap.max").exists() {
                write(&d.join("memory.swap.max"), "0", "memory")?;
            }
            write(&d.join("pids.max"), &limits.pids.to_string(), "pids")?;
            write(
                &d.join("cpu.max"),
                &format!("{quota} {CPU_PERIOD_US}"),
                "cpus",
            )?;
        } else {
            write(&cg.memory.join("memory.limit_in_bytes"), &mem, "memory")?;
            let memsw = cg.memory.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write(&memsw, &mem, "memory")?;
            }
            write(&cg.pids.join("pids.max"), &limits.pids.to_string(), "pids")?;
            let cpu = match layout {
                Layout::V1 { cpu, .. } => cpu.join(name),
                Layout::V2 { .. } => unreachable!("v1 branch"),
            };
            write(
                &cpu.join("cpu.cfs_period_us"),
                &CPU_PERIOD_US.to_string(),
                "cpus",
            )?;
            write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string(), "cpus")?;
        }
        Ok(cg)
    }

    /// Moves process `pid` (and so everything it forks) into the cgroup(s).
    pub fn add(&self, pid: i32) -> Result<(), SandboxError> {
        let pid = pid.to_string();
        for d in &self.dirs {
            write(&d.join("cgroup.procs"), &pid, "memory, pids and cpu limits")?;
        }
        Ok(())
    }

    pub fn stats(&self) -> Stats {
        if self.v2 {
            Stats {
                peak_memory: read_u64(&self.memory.join("memory.peak")),
                cpu_ns: keyed(&self.memory.join("cpu.stat"), "usage_usec").map(|u| u * 1000),
                oom_kills: keyed(&self.memory.join("memory.events"), "oom_kill").unwrap_or(0),
            }
        } else {
            Stats {
                peak_memory: read_u64(&self.memory.join("memory.max_usage_in_bytes")),
                cpu_ns: self
                    .cpuacct
                    .as_ref()
                    .and_then(|d| read_u64(&d.join("cpuacct.usage"))),
                oom_kills: keyed(&self.memory.join("memory.oom_control"), "oom_kill").unwrap_or(0),
            }
        }
    }

    /// Kills whatever is left (v2 `cgroup.kill`) and removes the directories.
    pub fn remove(&mut self) {
        if self.removed {
            return;
        }
        self.removed = true;
        if self.v2 {
            let _ = fs::write(self.memory.join("cgroup.kill"), "1");
        }
        for d in self.dirs.iter().rev() {
            for attempt in 0..50 {
                match fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(_) if attempt < 49 => {
                        // Tasks may still be exiting.
                        kill_tasks(d);
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    Err(e) => {
                        tracing::warn!(cgroup = %d.display(), error = %e, "could not remove sandbox cgroup")
                    }
                }
            }
        }
        let _ = &self.pids;
    }
}

fn kill_tasks(dir: &Path) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: SIGKILL to a pid that is in our own sandbox cgroup.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::own_path;

    #[test]
    fn finds_own_cgroup() {
        let text = "4:memory:/a/b\n2:cpu,cpuacct:/\n0::/user.slice\n";
        assert_eq!(own_path(text, "memory").as_deref(), Some("a/b"));
        assert_eq!(own_path(text, "cpuacct").as_deref(), Some(""));
        assert_eq!(own_path(text, "").as_deref(), Some("user.slice"));
        assert_eq!(own_path(text, "pids"), None);
    }
}
