//! Start-up overhead of the native sandbox: `true` in the sandbox against a
//! direct spawn (p50, p95), and throughput with every supervisor slot busy.
//! Run: `cargo bench -p dgm-sandbox --bench startup` (needs root or user
//! namespaces + cgroups, like the sandbox itself). Prints a markdown table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dgm_sandbox::native::NativeSandbox;
use dgm_sandbox::supervisor::{AnyBackend, NoopListener, Supervisor, SupervisorConfig};
use dgm_sandbox::{ExecStatus, Executor, Job};

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sb = match NativeSandbox::new() {
        Ok(sb) => sb,
        Err(e) => {
            eprintln!("native sandbox unavailable: {e}");
            return;
        }
    };
    let true_path = "/usr/bin/true";
    let network = std::env::var("NET").is_ok();
    let job = move || {
        let mut j = Job::new([true_path]);
        j.limits.network = network;
        j
    };

    // Warm up both paths.
    for _ in 0..10 {
        let _ = std::process::Command::new(true_path).status();
        let _ = rt.block_on(sb.execute(job()));
    }

    let mut direct = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let st = std::process::Command::new(true_path)
            .status()
            .expect("spawn");
        direct.push(t.elapsed());
        assert!(st.success());
    }
    let mut sandboxed = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = rt.block_on(sb.execute(job())).expect("sandbox");
        sandboxed.push(t.elapsed());
        assert_eq!(r.status, ExecStatus::Ok);
    }
    direct.sort();
    sandboxed.sort();

    let slots = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let sup = Supervisor::new(
        AnyBackend::Native(sb.clone()),
        SupervisorConfig { slots },
        Arc::new(NoopListener),
    );
    let jobs = n.max(slots * 10);
    let t = Instant::now();
    rt.block_on(async {
        let mut handles = Vec::new();
        for _ in 0..jobs {
            let sup = sup.clone();
            handles.push(tokio::spawn(async move {
                sup.execute(Job::new([true_path])).await
            }));
        }
        for h in handles {
            let r = h.await.expect("join").expect("run");
            assert_eq!(r.status, ExecStatus::Ok);
        }
    });
    let sandbox_tput = jobs as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    rt.block_on(async {
        let mut handles = Vec::new();
        for _ in 0..jobs {
            handles.push(tokio::spawn(async move {
                tokio::process::Command::new(true_path).status().await
            }));
        }
        for h in handles {
            let _ = h.await;
        }
    });
    let direct_tput = jobs as f64 / t.elapsed().as_secs_f64();

    println!("| measure | direct spawn | native sandbox | overhead |");
    println!("| --- | --- | --- | --- |");
    for (name, p) in [("p50", 0.5), ("p95", 0.95)] {
        let (d, s) = (pct(&direct, p), pct(&sandboxed, p));
        println!(
            "| {name} start-up of `true` (n={n}) | {:.2} ms | {:.2} ms | {:+.2} ms ({:.1}×) |",
            ms(d),
            ms(s),
            ms(s) - ms(d),
            ms(s) / ms(d)
        );
    }
    println!(
        "| throughput, {slots} slots busy, {jobs} jobs | {direct_tput:.0} /s | {sandbox_tput:.0} /s | {:.1}× slower |",
        direct_tput / sandbox_tput
    );
}
