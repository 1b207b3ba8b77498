//! Throughput of the benchmark runner: evaluations per minute of the binpack
//! train split (6 tasks x 4 instances x 500 items, First Fit seed), and the
//! share of that time spent inside the sandbox versus trusted scoring.
//!
//! `cargo run --release -p dgm-bench --example binpack_throughput -- [RUNS] [PARALLELISM] [direct|native|both]`
//!
//! `direct` runs jobs as plain subprocesses (no isolation: the floor);
//! `native` goes through `dgm_sandbox::supervisor::Supervisor::native`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use dgm_bench::direct::DirectExecutor;
use dgm_bench::{RunOptions, RunSpec, Split, Stage, StageReport, load_suite, run_stage};
use dgm_sandbox::Executor;

async fn measure<E: Executor>(name: &str, exec: &E, runs: usize, parallelism: usize) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let suite = load_suite(repo.join("benchmarks/binpack")).expect("binpack suite");
    let spec = RunSpec {
        code_dir: repo.join("examples/binpack"),
        command: vec!["python3".into(), "pack.py".into()],
        env: Default::default(),
    };
    let opts = RunOptions {
        parallelism,
        ..RunOptions::default()
    };
    let (mut elapsed, mut sandbox, mut check) = (0.0, 0.0, 0.0);
    let mut last: Option<StageReport> = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = run_stage(
            &suite,
            &Stage::all(),
            Split::Train,
            &spec,
            exec,
            &opts,
            &|_| {},
        )
        .await
        .expect("run");
        elapsed += t.elapsed().as_secs_f64();
        sandbox += r.perf.task_wall_ms / 1000.0;
        check += r.perf.check_ms / 1000.0;
        last = Some(r);
    }
    let r = last.expect("at least one run");
    let per_eval = elapsed / runs as f64;
    println!(
        "{name:<7} parallelism {parallelism}: {:.2} s per evaluation of the train split ({} tasks), {:.1} evaluations/minute; \
         sandbox jobs {:.0}% / trusted scorer {:.0}% of task time; score {:.4}, passed {}/{}",
        per_eval,
        r.tasks,
        60.0 / per_eval,
        100.0 * sandbox / (sandbox + check),
        100.0 * check / (sandbox + check),
        r.score,
        r.passed,
        r.tasks
    );
    for t in r.trajectories.iter().filter(|t| !t.passed()) {
        println!(
            "  failed {}: {:?} {:?}",
            t.task_id, t.error_category, t.rationale
        );
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let parallelism = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let which = args.get(3).cloned().unwrap_or_else(|| "both".into());
    if which == "direct" || which == "both" {
        measure("direct", &DirectExecutor, runs, parallelism).await;
    }
    if which == "native" || which == "both" {
        let listener = Arc::new(dgm_sandbox::supervisor::NoopListener);
        match dgm_sandbox::supervisor::Supervisor::native(listener) {
            Ok(sup) => measure("native", &sup, runs, parallelism).await,
            Err(e) => println!("native  unavailable: {e}"),
        }
    }
}
