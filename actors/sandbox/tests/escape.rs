//! The escape and limits suite: each test mounts one attack from inside the
//! native sandbox and asserts both that it failed and that the host is as it
//! was (canaries unchanged, listener untouched, host processes alive, nothing
//! left running). Needs Linux with user namespaces and cgroups (as CI has).

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dgm_sandbox::native::NativeSandbox;
use dgm_sandbox::{ExecResult, ExecStatus, Executor, Job, Limits, Mount};

fn sandbox() -> NativeSandbox {
    NativeSandbox::new().expect("the native sandbox must be available on this host")
}

fn out(r: &ExecResult) -> String {
    String::from_utf8_lossy(&r.stdout).into_owned()
}

fn err(r: &ExecResult) -> String {
    String::from_utf8_lossy(&r.stderr).into_owned()
}

async fn sh(script: &str, limits: Limits) -> ExecResult {
    let mut job = Job::new(["/bin/sh", "-c", script]);
    job.limits = limits;
    sandbox()
        .execute(job)
        .await
        .expect("the sandbox itself must work")
}

async fn py(code: &str, limits: Limits) -> ExecResult {
    let mut job = Job::new(["python3", "-c", code]);
    job.limits = limits;
    sandbox()
        .execute(job)
        .await
        .expect("the sandbox itself must work")
}

/// Host processes whose command line contains `needle`.
fn host_processes(needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    let me = std::process::id() as i32;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(pid);
            }
        }
    }
    found
}

fn host_uid_of(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn payload_is_not_host_root() {
    let r = sh(
        "id -u; id -g; cat /proc/self/uid_map; sleep 31337 & sleep 1; echo done",
        Limits::default(),
    )
    .await;
    assert_eq!(r.status, ExecStatus::Ok, "{}", err(&r));
    let text = out(&r);
    assert!(text.starts_with("1000\n1000\n"), "{text}");
    assert!(!text.contains(" 0 "), "maps host uid 0: {text}");

    // Seen from the host, the payload runs under an unprivileged uid.
    let probe = tokio::spawn(async {
        sh("sleep 4242", Limits::default()).await;
    });
    let mut seen = None;
    for _ in 0..100 {
        if let Some(pid) = host_processes("sleep 4242").into_iter().next() {
            seen = host_uid_of(pid);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    probe.abort();
    let uid = seen.expect("the payload is visible from the host");
    assert_ne!(uid, 0, "payload runs as host root");
}

#[tokio::test]
async fn cannot_read_etc_shadow() {
    let r = sh(
        "cat /etc/shadow; cat /proc/1/root/etc/shadow; ls /root /home; cat /tmp/../etc/shadow",
        Limits::default(),
    )
    .await;
    assert_ne!(r.status, ExecStatus::Ok);
    assert!(!out(&r).contains("root:"), "{}", out(&r));
    let r = py("print(open('/etc/shadow').read())", Limits::default()).await;
    assert_eq!(r.status, ExecStatus::NonZeroExit);
    assert!(
        err(&r).contains("FileNotFoundError") || err(&r).contains("PermissionError"),
        "{}",
        err(&r)
    );
}

#[tokio::test]
async fn cannot_write_outside_scratch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let canary = dir.path().join("canary.txt");
    std::fs::write(&canary, "original").expect("write canary");
    chmod_world_readable(dir.path());
    let mut job = Job::new([
        "/bin/sh",
        "-c",
        "for f in /usr/pwned /etc/pwned /pwned /bin/pwned /code/pwned /proc/pwned; do \
           echo x > $f && echo WROTE $f; done; \
         echo changed > /code/canary.txt && echo WROTE canary; \
         rm -f /code/canary.txt && echo REMOVED canary; \
         echo ok > /tmp/fine && cat /tmp/fine",
    ]);
    job.mounts.push(Mount {
        host: dir.path().to_path_buf(),
        sandbox: PathBuf::from("/code"),
    });
    let r = sandbox().execute(job).await.expect("run");
    assert!(!out(&r).contains("WROTE"), "{}", out(&r));
    assert!(!out(&r).contains("REMOVED"), "{}", out(&r));
    assert!(
        out(&r).contains("ok"),
        "scratch must be writable: {}",
        err(&r)
    );
    assert_eq!(
        std::fs::read_to_string(&canary).expect("canary"),
        "original"
    );
    assert!(!PathBuf::from("/usr/pwned").exists());
    assert!(!PathBuf::from("/pwned").exists());
}

fn chmod_world_readable(p: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    for e in walk(p) {
        let mode = if e.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&e, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

fn walk(p: &std::path::Path) -> Vec<PathBuf> {
    let mut all = vec![p.to_path_buf()];
    if p.is_dir() {
        for e in std::fs::read_dir(p).expect("read_dir").flatten() {
            all.extend(walk(&e.path()));
        }
    }
    all
}

#[tokio::test]
async fn cannot_write_core_pattern() {
    let before = std::fs::read_to_string("/proc/sys/kernel/core_pattern").expect("core_pattern");
    let r = sh(
        "echo '|/tmp/evil %p' > /proc/sys/kernel/core_pattern && echo WROTE; \
         echo 1 > /proc/sys/kernel/sysrq && echo WROTE2; \
         echo c > /proc/sysrq-trigger && echo WROTE3",
        Limits::default(),
    )
    .await;
    assert!(!out(&r).contains("WROTE"), "{}", out(&r));
    let after = std::fs::read_to_string("/proc/sys/kernel/core_pattern").expect("core_pattern");
    assert_eq!(before, after);
}

#[tokio::test]
async fn cannot_reach_host_loopback_or_outside() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let code = format!(
        "import socket\n\
         for addr in [('127.0.0.1', {port}), ('1.1.1.1', 53), ('8.8.8.8', 443)]:\n\
         \ttry:\n\
         \t\ts = socket.create_connection(addr, timeout=2)\n\
         \t\tprint('CONNECTED', addr)\n\
         \texcept OSError as e:\n\
         \t\tprint('refused', addr, e)\n"
    );
    let r = py(&code, Limits::default()).await;
    assert_eq!(r.status, ExecStatus::Ok, "{}", err(&r));
    assert!(!out(&r).contains("CONNECTED"), "{}", out(&r));
    assert_eq!(out(&r).matches("refused").count(), 3, "{}", out(&r));
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the host listener accepted a connection: {other:?}"),
    }
}

/// The network namespace (`net:[inode]`) of every thread of this process,
/// except the sandbox's own producer of fresh namespaces.
fn own_threads_netns() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() == "dgm-sandbox-net" {
            continue;
        }
        if let Ok(link) = std::fs::read_link(t.path().join("ns/net")) {
            out.push((comm.trim().to_string(), link.display().to_string()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sandbox_gets_a_fresh_empty_network_namespace() {
    let host = std::fs::read_link("/proc/self/ns/net")
        .expect("own netns")
        .display()
        .to_string();
    let script = "readlink /proc/self/ns/net; cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' '";
    let runs = futures_join(script, 4).await;
    let mut seen = std::collections::HashSet::new();
    for r in &runs {
        assert_eq!(r.status, ExecStatus::Ok, "{}", err(r));
        let text = out(r);
        let mut lines = text.lines();
        let ns = lines.next().expect("netns").to_string();
        assert!(ns.starts_with("net:["), "{text}");
        assert_ne!(
            ns, host,
            "a sandbox must not share the host's network namespace"
        );
        assert!(seen.insert(ns), "two sandboxes shared a network namespace");
        let ifaces: Vec<&str> = lines.collect();
        assert_eq!(ifaces, ["lo"], "only a loopback device: {text}");
    }
    // The threads that cloned the sandboxes are back in the host's namespace.
    for (comm, ns) in own_threads_netns() {
        assert_eq!(
            ns, host,
            "thread {comm} was left in another network namespace"
        );
    }
    // With `network`, the payload has the host's network.
    let limits = Limits {
        network: true,
        ..Limits::default()
    };
    let r = sh("readlink /proc/self/ns/net", limits).await;
    assert_eq!(out(&r).trim(), host, "{}", err(&r));
}

async fn futures_join(script: &str, n: usize) -> Vec<ExecResult> {
    let mut handles = Vec::new();
    for _ in 0..n {
        let script = script.to_string();
        handles.push(tokio::spawn(
            async move { sh(&script, Limits::default()).await },
        ));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("join"));
    }
    out
}

#[tokio::test]
async fn fork_bomb_is_contained() {
    let limits = Limits {
        pids: 32,
        timeout: Duration::from_secs(4),
        ..Limits::default()
    };
    let start = Instant::now();
    let r = sh("bomb() { bomb | bomb & }; bomb; sleep 100", limits).await;
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
    assert!(matches!(
        r.status,
        ExecStatus::Timeout | ExecStatus::Ok | ExecStatus::NonZeroExit
    ));
    // The host can still fork, and nothing of the bomb is left.
    let ok = std::process::Command::new("true")
        .status()
        .expect("host fork");
    assert!(ok.success());
    assert!(host_processes("bomb").is_empty());
}

#[tokio::test]
async fn memory_bomb_is_killed() {
    let limits = Limits {
        memory_bytes: 64 * 1024 * 1024,
        ..Limits::default()
    };
    let r = py(
        "x = []\nwhile True:\n    x.append(bytearray(16 * 1024 * 1024))",
        limits,
    )
    .await;
    assert_eq!(r.status, ExecStatus::OutOfMemory, "{r:?} {}", err(&r));
    if let Some(peak) = r.peak_memory_bytes {
        assert!(peak <= 64 * 1024 * 1024 + 4096 * 16, "peak {peak}");
    }
}

#[tokio::test]
async fn cpu_burn_past_timeout_is_killed() {
    let limits = Limits {
        timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let start = Instant::now();
    let r = sh("while :; do :; done", limits).await;
    assert_eq!(r.status, ExecStatus::Timeout);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert!(r.wall >= Duration::from_secs(1));
}

#[tokio::test]
async fn cpu_quota_is_enforced() {
    let limits = Limits {
        cpus: 0.2,
        timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let r = sh("while :; do :; done", limits).await;
    assert_eq!(r.status, ExecStatus::Timeout);
    // 0.2 cores for ~2 s is ~0.4 s of CPU; allow slack, but far below 2 s.
    assert!(r.cpu < Duration::from_millis(1000), "cpu {:?}", r.cpu);
}

#[tokio::test]
async fn file_size_bomb_is_contained() {
    let limits = Limits {
        scratch_bytes: 8 * 1024 * 1024,
        ..Limits::default()
    };
    let r = sh(
        "dd if=/dev/zero of=/tmp/big bs=1M count=100 2>&1; ls -l /tmp/big; \
         dd if=/dev/zero of=/dev/shm/big bs=1M count=100 2>&1; echo end",
        limits,
    )
    .await;
    let text = out(&r);
    assert!(text.contains("end"), "{text} {}", err(&r));
    assert!(!text.contains("104857600"), "{text}");
}

#[tokio::test]
async fn hundred_megabytes_of_stdout_are_capped() {
    let limits = Limits {
        output_bytes: 1024 * 1024,
        ..Limits::default()
    };
    let r = sh("head -c 100000000 /dev/zero; echo done >&2", limits).await;
    assert_eq!(r.status, ExecStatus::Ok, "{}", err(&r));
    assert_eq!(r.stdout.len(), 1024 * 1024);
    assert!(r.stdout_truncated);
    assert!(!r.stderr_truncated);
    assert_eq!(err(&r), "done\n");
}

#[tokio::test]
async fn nested_unshare_and_mount_fail() {
    let r = sh(
        "unshare -U true && echo UNSHARED; unshare -m true && echo UNSHARED2; \
         unshare -r true && echo UNSHARED3; \
         mkdir -p /tmp/m; mount -t tmpfs none /tmp/m && echo MOUNTED; \
         mount --bind /tmp /tmp/m && echo MOUNTED2; \
         umount /proc && echo UMOUNTED",
        Limits::default(),
    )
    .await;
    let text = out(&r);
    assert!(!text.contains("UNSHARED"), "{text}");
    assert!(!text.contains("MOUNTED"), "{text}");
    assert!(!text.contains("UMOUNTED"), "{text}");
    let r = py(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n\
         print(libc.unshare(0x10000000), ctypes.get_errno())\n\
         print(libc.setns(os.open('/proc/self/ns/mnt', os.O_RDONLY), 0), ctypes.get_errno())",
        Limits::default(),
    )
    .await;
    assert_eq!(out(&r), "-1 1\n-1 1\n", "{}", err(&r));
}

/// A host process the sandbox tries to ptrace and kill.
struct HostVictim(std::process::Child);

impl Drop for HostVictim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn cannot_ptrace_or_kill_a_host_process() {
    let mut victim = HostVictim(
        std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn victim"),
    );
    let pid = victim.0.id();
    let code = format!(
        "import ctypes, os, signal\nlibc = ctypes.CDLL(None, use_errno=True)\n\
         r = libc.ptrace(16, {pid}, 0, 0)\nprint('ptrace', r, ctypes.get_errno())\n\
         for target in [{pid}, 1, -1]:\n\
         \ttry:\n\
         \t\tos.kill(target, signal.SIGKILL) if target != -1 else None\n\
         \t\tprint('killed', target)\n\
         \texcept OSError as e:\n\
         \t\tprint('kill failed', target, e.errno)\n"
    );
    let r = py(&code, Limits::default()).await;
    assert!(out(&r).starts_with("ptrace -1 "), "{} {}", out(&r), err(&r));
    assert!(!out(&r).contains(&format!("killed {pid}")), "{}", out(&r));
    // kill -1 from inside only reaches the sandbox's own processes.
    let r2 = sh(
        &format!("kill -9 {pid}; kill -9 -1; echo still"),
        Limits::default(),
    )
    .await;
    let _ = r2;
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        victim.0.try_wait().expect("try_wait").is_none(),
        "the host process was killed"
    );
}

#[tokio::test]
async fn background_process_is_reaped() {
    let start = Instant::now();
    let r = sh(
        "(sleep 777333 &) ; nohup sleep 777334 >/dev/null 2>&1 & echo started",
        Limits::default(),
    )
    .await;
    assert_eq!(r.status, ExecStatus::Ok, "{}", err(&r));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "waited for the daemon"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        host_processes("sleep 777333").is_empty(),
        "daemon outlived the payload"
    );
    assert!(
        host_processes("sleep 777334").is_empty(),
        "daemon outlived the payload"
    );
}

#[tokio::test]
async fn symlink_in_scratch_does_not_reach_host_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let canary = dir.path().join("canary");
    std::fs::write(&canary, "host secret").expect("canary");
    let host = canary.display().to_string();
    let r = sh(
        &format!(
            "ln -s {host} /tmp/link && cat /tmp/link; echo pwned > /tmp/link && echo WROTE; \
             ln -s /etc/shadow /tmp/sh && cat /tmp/sh; \
             ln -s /proc/1/root /tmp/r && ls /tmp/r/; echo end"
        ),
        Limits::default(),
    )
    .await;
    assert!(!out(&r).contains("host secret"), "{}", out(&r));
    assert!(!out(&r).contains("root:"), "{}", out(&r));
    assert_eq!(
        std::fs::read_to_string(&canary).expect("canary"),
        "host secret"
    );
}

#[tokio::test]
async fn outputs_status_and_stdin() {
    let mut job = Job::new([
        "python3",
        "-c",
        "import sys; d = sys.stdin.read(); print(d.upper()); sys.exit(3)",
    ]);
    job.stdin = b"hello".to_vec();
    let r = sandbox().execute(job).await.expect("run");
    assert_eq!(r.status, ExecStatus::NonZeroExit);
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(out(&r), "HELLO\n");
    let r = sh("kill -TERM $$", Limits::default()).await;
    assert_eq!(r.status, ExecStatus::Signaled);
    assert_eq!(r.signal, Some(libc_sigterm()));
    let r = sandbox()
        .execute(Job::new(["no-such-program"]))
        .await
        .expect("run");
    assert_eq!(r.status, ExecStatus::SetupError);
    assert_eq!(r.exit_code, Some(127));
    assert!(err(&r).contains("no-such-program"), "{}", err(&r));
}

fn libc_sigterm() -> i32 {
    15
}

#[tokio::test]
async fn read_only_mount_is_visible() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("solve.py"), "print(6 * 7)\n").expect("write");
    chmod_world_readable(dir.path());
    let mut job = Job::new(["python3", "solve.py"]);
    job.workdir = Some(PathBuf::from("/code"));
    job.mounts.push(Mount {
        host: dir.path().to_path_buf(),
        sandbox: PathBuf::from("/code"),
    });
    let r = sandbox().execute(job).await.expect("run");
    assert_eq!(out(&r), "42\n", "{}", err(&r));
}

#[test]
fn unenforceable_limits_are_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let mut job = Job::new(["true"]);
    job.limits.cpus = 0.0;
    let e = rt
        .block_on(sandbox().execute(job))
        .expect_err("must refuse");
    assert!(e.to_string().contains("cpus"), "{e}");
    let mut job = Job::new(["true"]);
    job.mounts.push(Mount {
        host: PathBuf::from("/etc"),
        sandbox: PathBuf::from("/usr/etc"),
    });
    assert!(rt.block_on(sandbox().execute(job)).is_err());
    let mut buf = String::new();
    let _ = std::io::empty().read_to_string(&mut buf);
}
