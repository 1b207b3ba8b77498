//! The shipped bin packing suite, end to end: the First Fit seed agent, a
//! Best Fit variant and a broken packer, with the suite's First Fit / Best Fit
//! baselines checked against an independent computation done here in Rust.

mod common;

use common::*;
use dgm_bench::direct::DirectExecutor;
use dgm_bench::{ErrorCategory, Split, Stage, load_suite, run_stage, run_stages};
use serde_json::Value;

fn l1(cap: u64, items: &[u64]) -> u64 {
    items.iter().sum::<u64>().div_ceil(cap).max(1)
}

fn first_fit(cap: u64, items: &[u64]) -> usize {
    let mut rem: Vec<u64> = Vec::new();
    for &it in items {
        match rem.iter_mut().find(|r| **r >= it) {
            Some(r) => *r -= it,
            None => rem.push(cap - it),
        }
    }
    rem.len()
}

fn best_fit(cap: u64, items: &[u64]) -> usize {
    let mut rem: Vec<u64> = Vec::new();
    for &it in items {
        // Tightest bin that fits; ties go to the lowest index.
        let mut best: Option<usize> = None;
        for (i, &r) in rem.iter().enumerate() {
            if r >= it && best.is_none_or(|b| r < rem[b]) {
                best = Some(i);
            }
        }
        match best {
            Some(b) => rem[b] -= it,
            None => rem.push(cap - it),
        }
    }
    rem.len()
}

/// (first fit, best fit) mean excess % of one task file.
fn baselines(path: &std::path::Path) -> (f64, f64) {
    let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let inst = doc["instances"].as_array().unwrap();
    let (mut ff, mut bf) = (0.0, 0.0);
    for i in inst {
        let cap = i["capacity"].as_u64().unwrap();
        let items: Vec<u64> = i["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let lb = l1(cap, &items) as f64;
        ff += 100.0 * (first_fit(cap, &items) as f64 - lb) / lb;
        bf += 100.0 * (best_fit(cap, &items) as f64 - lb) / lb;
    }
    (ff / inst.len() as f64, bf / inst.len() as f64)
}

fn copy_agent(priority: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for f in ["agent.toml", "pack.py"] {
        std::fs::copy(repo().join("examples/binpack").join(f), d.path().join(f)).unwrap();
    }
    std::fs::write(d.path().join("priority.py"), priority).unwrap();
    d
}

const BEST_FIT: &str = "def priority(item, bins):\n    return [-(b - item) for b in bins]\n";

#[tokio::test]
async fn first_fit_seed_matches_independent_baselines() {
    let suite = load_suite(repo().join("benchmarks/binpack")).unwrap();
    assert_eq!(suite.count(Split::Train), 6);
    assert_eq!(suite.count(Split::Validation), 4);
    assert_eq!(suite.count(Split::Holdout), 6);
    let spec = agent(&repo().join("examples/binpack"), &["python3", "pack.py"]);
    let r = run_stage(
        &suite,
        &Stage::all(),
        Split::Train,
        &spec,
        &DirectExecutor,
        &opts(2),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(r.tasks, 6);
    assert_eq!(r.passed, 6, "{}", dgm_bench::render_table(&r));
    let (mut ff_sum, mut bf_sum) = (0.0, 0.0);
    for t in &r.trajectories {
        let task = suite.tasks.iter().find(|x| x.id == t.task_id).unwrap();
        let dgm_bench::TaskInput::File(path) = &task.input else {
            panic!("file input")
        };
        let (ff, bf) = baselines(path);
        ff_sum += ff;
        bf_sum += bf;
        assert!(
            (t.metrics["first_fit_excess_pct"] - ff).abs() < 1e-9,
            "{}",
            t.task_id
        );
        assert!(
            (t.metrics["best_fit_excess_pct"] - bf).abs() < 1e-9,
            "{}",
            t.task_id
        );
        // The seed is First Fit.
        assert!((t.metrics["excess_pct"] - ff).abs() < 1e-9, "{}", t.task_id);
        assert!((t.score - 5.0 / (5.0 + ff)).abs() < 1e-12);
    }
    assert!((r.extra["first_fit_excess_pct"] - ff_sum / 6.0).abs() < 1e-9);
    assert!((r.extra["best_fit_excess_pct"] - bf_sum / 6.0).abs() < 1e-9);
    // Best Fit beats First Fit on this distribution, as published.
    assert!(r.extra["best_fit_excess_pct"] < r.extra["first_fit_excess_pct"]);
    assert!(r.tag_success_rates.contains_key("or") && r.tag_success_rates.contains_key("weibull"));
    let m = r.metrics();
    assert!(m.contains_key("or_success_rate"));
}

#[tokio::test]
async fn best_fit_agent_scores_higher_and_equals_its_baseline() {
    let suite = load_suite(repo().join("benchmarks/binpack")).unwrap();
    let ff_dir = repo().join("examples/binpack");
    let bf_dir = copy_agent(BEST_FIT);
    let stage = suite.stage("smoke").unwrap().clone();
    let ff = run_stage(
        &suite,
        &stage,
        Split::Validation,
        &agent(&ff_dir, &["python3", "pack.py"]),
        &DirectExecutor,
        &opts(2),
        &quiet,
    )
    .await
    .unwrap();
    let bf = run_stage(
        &suite,
        &stage,
        Split::Validation,
        &agent(bf_dir.path(), &["python3", "pack.py"]),
        &DirectExecutor,
        &opts(2),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(bf.tasks, 2);
    assert!((bf.extra["excess_pct"] - bf.extra["best_fit_excess_pct"]).abs() < 1e-9);
    assert!(bf.extra["excess_pct"] < ff.extra["excess_pct"]);
    assert!(bf.score > ff.score, "lower excess must mean a higher score");
}

#[tokio::test]
async fn invalid_packing_fails_the_smoke_gate() {
    let suite = load_suite(repo().join("benchmarks/binpack")).unwrap();
    // Everything into bin 0: over capacity.
    let bad = copy_agent("def priority(item, bins):\n    return [1.0 for b in bins]\n");
    std::fs::write(
        bad.path().join("pack.py"),
        "import json, os\nd = json.load(open(os.environ['DGM_TASK_INPUT']))\n\
         print(json.dumps({'assignments': [[0] * len(i['items']) for i in d['instances']]}))\n",
    )
    .unwrap();
    let r = run_stages(
        &suite,
        Split::Train,
        &agent(bad.path(), &["python3", "pack.py"]),
        &DirectExecutor,
        &opts(2),
        &quiet,
    )
    .await
    .unwrap();
    assert!(!r.completed);
    assert_eq!(r.stopped_at.as_deref(), Some("smoke"));
    assert_eq!(r.stages.len(), 1);
    let t = &r.stages[0].trajectories[0];
    assert_eq!(t.error_category, Some(ErrorCategory::WrongAnswer));
    assert!(
        t.rationale.as_deref().unwrap().contains("capacity"),
        "{:?}",
        t.rationale
    );
    assert_eq!(t.score, 0.0);
}

#[tokio::test]
async fn staged_run_reuses_stage_one_and_parallel_equals_serial() {
    let suite = load_suite(repo().join("benchmarks/binpack")).unwrap();
    let spec = agent(&repo().join("examples/binpack"), &["python3", "pack.py"]);
    let serial = run_stages(
        &suite,
        Split::Train,
        &spec,
        &DirectExecutor,
        &opts(1),
        &quiet,
    )
    .await
    .unwrap();
    let parallel = run_stages(
        &suite,
        Split::Train,
        &spec,
        &DirectExecutor,
        &opts(4),
        &quiet,
    )
    .await
    .unwrap();
    assert!(serial.completed && parallel.completed);
    assert_eq!(serial.stages.len(), 2);
    assert_eq!(serial.stages[0].tasks, 2);
    assert_eq!(serial.stages[1].tasks, 6);
    for (a, b) in serial.stages.iter().zip(&parallel.stages) {
        assert_eq!(a.metrics(), b.metrics());
        let ids = |r: &dgm_bench::StageReport| {
            r.trajectories
                .iter()
                .map(|t| t.task_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(a), ids(b));
    }
    let json = serde_json::to_string(&serial).unwrap();
    let back: dgm_bench::RunReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.stages[1].metrics(), serial.stages[1].metrics());
}

#[test]
fn committed_instances_match_the_generator() {
    let out = std::process::Command::new("python3")
        .arg(repo().join("benchmarks/binpack/generate.py"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The same smoke stage through the real native sandbox, where it can start
/// here (it needs user namespaces and cgroups; skipped otherwise).
#[tokio::test]
async fn native_sandbox_runs_the_binpack_smoke_stage() {
    let listener = std::sync::Arc::new(dgm_sandbox::supervisor::NoopListener);
    let sup = match dgm_sandbox::supervisor::Supervisor::native(listener) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipping: native sandbox unavailable: {e}");
            return;
        }
    };
    let suite = load_suite(repo().join("benchmarks/binpack")).unwrap();
    let spec = agent(&repo().join("examples/binpack"), &["python3", "pack.py"]);
    let stage = suite.stage("smoke").unwrap().clone();
    let native = run_stage(&suite, &stage, Split::Train, &spec, &sup, &opts(2), &quiet)
        .await
        .unwrap();
    let direct = run_stage(
        &suite,
        &stage,
        Split::Train,
        &spec,
        &DirectExecutor,
        &opts(2),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(native.passed, 2, "{}", dgm_bench::render_table(&native));
    assert_eq!(native.metrics(), direct.metrics());
}
