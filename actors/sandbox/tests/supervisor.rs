//! Supervisor behaviour over the native backend: slots and FIFO queueing,
//! cancellation (explicit and by dropping the future), listener calls, the
//! actix shell, and that nothing (process, cgroup, mount) is left behind.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dgm_sandbox::native::{NativeConfig, NativeSandbox};
use dgm_sandbox::supervisor::{AnyBackend, ExecutionListener, Supervisor, SupervisorConfig};
use dgm_sandbox::{ExecResult, ExecStatus, Executor, Job, SandboxError};

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl ExecutionListener for Recorder {
    fn started(&self, id: &str, _job: &Job) {
        self.0.lock().expect("lock").push(format!("started {id}"));
    }
    fn finished(&self, id: &str, _job: &Job, result: &Result<ExecResult, SandboxError>) {
        let what = match result {
            Ok(r) => format!("{:?}", r.status),
            Err(e) => e.to_string(),
        };
        self.0
            .lock()
            .expect("lock")
            .push(format!("finished {id} {what}"));
    }
}

fn native(subdir: &str) -> NativeSandbox {
    NativeSandbox::with_config(NativeConfig {
        cgroup_subdir: subdir.to_string(),
        ..NativeConfig::default()
    })
    .expect("native sandbox")
}

fn supervisor(slots: usize, subdir: &str, rec: Arc<Recorder>) -> Supervisor {
    Supervisor::new(
        AnyBackend::Native(native(subdir)),
        SupervisorConfig { slots },
        rec,
    )
}

fn sleep_job(secs: &str) -> Job {
    Job::new(["sleep", secs])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slot_runs_jobs_in_fifo_order() {
    let rec = Arc::new(Recorder::default());
    let sup = supervisor(1, "dgm-sandbox-test-fifo", rec.clone());
    let mut handles = Vec::new();
    for i in 0..3 {
        let sup = sup.clone();
        handles.push(tokio::spawn(async move {
            sup.execute_with_id(format!("job{i}"), Job::new(["sh", "-c", "sleep 0.2"]))
                .await
        }));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for h in handles {
        let r = h.await.expect("join").expect("run");
        assert_eq!(r.status, ExecStatus::Ok);
    }
    let log = rec.0.lock().expect("lock").clone();
    assert_eq!(
        log,
        vec![
            "started job0",
            "finished job0 Ok",
            "started job1",
            "finished job1 Ok",
            "started job2",
            "finished job2 Ok"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_a_running_and_a_queued_execution() {
    let rec = Arc::new(Recorder::default());
    let sup = supervisor(1, "dgm-sandbox-test-cancel", rec.clone());
    let a = tokio::spawn({
        let sup = sup.clone();
        async move { sup.execute_with_id("a".into(), sleep_job("123457")).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = tokio::spawn({
        let sup = sup.clone();
        async move { sup.execute_with_id("b".into(), sleep_job("123458")).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sup.running(), 1);
    let start = Instant::now();
    assert!(sup.cancel("b"), "queued execution");
    assert!(sup.cancel("a"), "running execution");
    assert!(!sup.cancel("nope"));
    assert!(matches!(
        a.await.expect("join"),
        Err(SandboxError::Cancelled)
    ));
    assert!(matches!(
        b.await.expect("join"),
        Err(SandboxError::Cancelled)
    ));
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(no_process("sleep 123457") && no_process("sleep 123458"));
    let log = rec.0.lock().expect("lock").clone();
    assert!(log.contains(&"started a".to_string()));
    assert!(
        !log.contains(&"started b".to_string()),
        "b never got a slot: {log:?}"
    );
    assert!(log.contains(&"finished a cancelled".to_string()), "{log:?}");
    assert!(log.contains(&"finished b cancelled".to_string()), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_future_kills_the_payload_and_cleans_up() {
    let subdir = "dgm-sandbox-test-drop";
    let sb = native(subdir);
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .count();
    let r = tokio::time::timeout(Duration::from_millis(500), sb.execute(sleep_job("424243"))).await;
    assert!(r.is_err(), "must still be running");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(no_process("sleep 424243"));
    // A timeout and a normal run too, then nothing may be left.
    let mut job = sleep_job("424244");
    job.limits.timeout = Duration::from_millis(300);
    assert_eq!(
        sb.execute(job).await.expect("run").status,
        ExecStatus::Timeout
    );
    assert_eq!(
        sb.execute(Job::new(["true"])).await.expect("run").status,
        ExecStatus::Ok
    );
    assert!(no_process("sleep 424244"));
    for dir in sb.cgroup_layout().dirs() {
        let left: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("cgroup dir")
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "cgroups left behind: {left:?}");
        let _ = std::fs::remove_dir(&dir);
    }
    let mounts_after = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .count();
    assert_eq!(
        mounts_before, mounts_after,
        "a mount leaked into the host namespace"
    );
}

#[test]
fn actix_actor_shell_forwards_to_the_supervisor() {
    use actix::Actor;
    use dgm_sandbox::actor::{Execute, SandboxSupervisorActor};
    let sys = actix::System::new();
    let result = sys.block_on(async {
        let sup = supervisor(2, "dgm-sandbox-test-actor", Arc::new(Recorder::default()));
        let addr = SandboxSupervisorActor::new(sup).start();
        addr.send(Execute(Job::new(["python3", "-c", "print(40 + 2)"])))
            .await
    });
    let r = result.expect("mailbox").expect("run");
    assert_eq!(r.stdout, b"42\n");
}

fn no_process(needle: &str) -> bool {
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd)
                .replace('\0', " ")
                .contains(needle)
        {
            return false;
        }
    }
    true
}
