//! The same seed gives the same decisions, event for event.
//!
//! A short run (mutate proposer, fixed seed, one attempt per generation:
//! with several in flight, which of two equal children was created first
//! is a race, and ties between equal scores go to the earlier one) is
//! recorded as a canonical text — each attempt's events in
//! order, with what varies between runs (the run's id, times, durations)
//! taken out — and compared with `golden/determinism.txt`, which was
//! recorded before the loop was split into steps. Set `DGM_BLESS=1` to
//! write the file anew after an intended change of behaviour.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dgm_events::Store;
use dgm_events::testing::sqlite_url;
use dgm_evolve::builder::ensure_registered;
use dgm_evolve::testing::SizeExecutor;
use dgm_evolve::{Evolution, EvolveConfig, NoObserver};
use dgm_propose::{MutateConfig, MutateProposer};

/// Answers at once, as a pure function of the code: the "run time" falls
/// as `priority.py` grows (longer children score better, so some are
/// promoted), and code whose size is a multiple of 5 crashes (so some
/// children are rejected).
fn executor() -> SizeExecutor {
    SizeExecutor {
        file: "priority.py",
        missing: 1_000,
        wall: |size| Duration::from_millis(200_000 / size.max(1)),
        crashes: |size| size % 5 == 0,
    }
}

const SUITE: &str = r#"
[suite]
name = "determinism"
kind = "performance"
description = "Scored by the reported run time alone"
pass_threshold = 0.1

[performance]
measure = "wall"
target_ms = 300

[[stages]]
name = "smoke"
tasks = 1
min_pass_rate = 1.0

[[stages]]
name = "full"

[[tasks]]
id = "a"
input = { n = 1 }

[[tasks]]
id = "b"
input = { n = 2 }

[[tasks]]
id = "c"
input = { n = 3 }

[[tasks]]
id = "v"
split = "validation"
input = { n = 4 }
"#;

/// Keys whose values differ from run to run of the same seed.
const VOLATILE: &[&str] = &[
    "wall_ms",
    "cpu_ms",
    "peak_memory_bytes",
    "latency_ms",
    "elapsed_secs",
    "loop_ms_per_attempt",
];

fn scrub(value: &mut serde_json::Value, run_id: &str, suite: &str) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|k, _| !VOLATILE.contains(&k.as_str()));
            for v in map.values_mut() {
                scrub(v, run_id, suite);
            }
        }
        serde_json::Value::Array(list) => list.iter_mut().for_each(|v| scrub(v, run_id, suite)),
        serde_json::Value::String(s) => *s = s.replace(run_id, "RUN").replace(suite, "SUITE"),
        _ => {}
    }
}

/// Each attempt's events (the run's own under `run`), in log order.
async fn canonical(store: &Store, run_id: &str, suite: &Path) -> String {
    let suite = suite.display().to_string();
    let mut by_attempt: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in store.read_all(None).await.expect("read") {
        if r.metadata.run_id.as_deref() != Some(run_id) {
            continue;
        }
        let key = r
            .metadata
            .attempt_id
            .as_deref()
            .map(|a| a.replace(run_id, "RUN"))
            .unwrap_or_else(|| "run".into());
        let mut payload = serde_json::to_value(&r.event).expect("encode");
        scrub(&mut payload, run_id, &suite);
        by_attempt.entry(key).or_default().push(payload.to_string());
    }
    let mut out = String::new();
    for (attempt, events) in by_attempt {
        out.push_str(&format!("== {attempt}\n"));
        for e in events {
            out.push_str(&e);
            out.push('\n');
        }
    }
    out
}

#[tokio::test]
async fn the_same_seed_gives_the_same_events_and_decisions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = dir.path().join("suite");
    std::fs::create_dir_all(&suite).expect("suite dir");
    std::fs::write(suite.join("suite.toml"), SUITE).expect("suite");
    let store = Arc::new(Store::open(&sqlite_url(dir.path())).await.expect("store"));
    let (agent, _) = ensure_registered(&store, &root.join("examples/binpack"), "test")
        .await
        .expect("register");
    let mut config = EvolveConfig::new(agent, &suite);
    config.population = 1;
    config.generations = 16;
    config.seed = 11;
    config.parallelism = 2;
    let evolution = Evolution::new(
        store.clone(),
        Arc::new(executor()),
        Arc::new(MutateProposer::new(MutateConfig::default())),
        config,
    )
    .expect("evolution");
    let summary = evolution.run(&NoObserver).await.expect("run");
    assert_eq!(summary.attempts, 16);
    let got = canonical(&store, evolution.run_id(), &suite).await;
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/determinism.txt");
    if std::env::var_os("DGM_BLESS").is_some() {
        std::fs::write(&golden, &got).expect("bless");
        return;
    }
    let want = std::fs::read_to_string(&golden).expect("golden file (DGM_BLESS=1 writes it)");
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(g, w)| g != w)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "events differ from the golden run at line {}:\n  got:  {}\n  want: {}",
            first + 1,
            got.lines().nth(first).unwrap_or("<end>"),
            want.lines().nth(first).unwrap_or("<end>")
        );
    }
}
