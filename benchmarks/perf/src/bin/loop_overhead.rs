//! The Darwin loop's own time per attempt: everything but the sandbox and
//! the scorer.
//!
//! Evolves `examples/binpack` with the real engine, store, proposer and
//! benchmark runner, but with an executor that answers at once (no process
//! is started) and a `performance` suite that needs no scorer, so whatever
//! time is left is the loop's: selection, diagnosis, proposal, validation,
//! recording every event and blob, deciding. Reports the engine's own
//! figure (wall time outside the runner, per attempt) and the plain wall
//! time per attempt, over the first and the last attempts of a long run (so
//! a cost that grows with the log shows).
//!
//! `cargo run --release -p dgm-perf --bin loop_overhead [-- ATTEMPTS]`

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use dgm_events::Store;
use dgm_events::testing::sqlite_url;
use dgm_evolve::builder::ensure_registered;
use dgm_evolve::testing::SizeExecutor;
use dgm_evolve::{Evolution, EvolveConfig, NoObserver};
use dgm_propose::{MutateConfig, MutateProposer};

/// Answers every job at once; the "run time" it reports is the size of the
/// agent's `priority.py`, so shorter children score better and some are
/// promoted (the decision path with validation runs too).
fn instant_executor() -> SizeExecutor {
    SizeExecutor::millis_per_byte("priority.py")
}

const SUITE: &str = r#"
[suite]
name = "loop-overhead"
kind = "performance"
description = "Scored by the reported run time alone: no scorer process"

[performance]
measure = "wall"
target_ms = 100

[[stages]]
name = "smoke"
tasks = 1

[[stages]]
name = "full"

[[tasks]]
id = "a"
input = { n = 1 }

[[tasks]]
id = "b"
input = { n = 2 }

[[tasks]]
id = "v"
split = "validation"
input = { n = 3 }
"#;

async fn run(
    store: &Arc<Store>,
    agent: &str,
    suite: &Path,
    attempts: u32,
) -> Result<(Option<f64>, f64), Box<dyn std::error::Error>> {
    let mut config = EvolveConfig::new(agent, suite);
    config.population = 1;
    config.generations = attempts;
    config.max_attempts = Some(attempts);
    config.seed = 7;
    let evolution = Evolution::new(
        store.clone(),
        Arc::new(instant_executor()),
        Arc::new(MutateProposer::new(MutateConfig::default())),
        config,
    )?;
    let began = Instant::now();
    let summary = evolution.run(&NoObserver).await?;
    let wall_ms = began.elapsed().as_secs_f64() * 1e3;
    Ok((
        summary.loop_ms_per_attempt,
        wall_ms / summary.attempts.max(1) as f64,
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let attempts: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir()?;
    let suite = dir.path().join("suite");
    std::fs::create_dir_all(&suite)?;
    std::fs::write(suite.join("suite.toml"), SUITE)?;
    let store = Arc::new(Store::open(&sqlite_url(dir.path())).await?);
    let (agent, _) = ensure_registered(&store, &root.join("examples/binpack"), "bench").await?;

    // Two runs on one store: the second starts where the log is already long.
    let (first_engine, first_wall) = run(&store, &agent, &suite, attempts).await?;
    let (last_engine, last_wall) = run(&store, &agent, &suite, attempts).await?;
    let show = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    println!("loop overhead per attempt, {attempts} attempts per run (population 1):");
    println!(
        "  first run: {} ms outside the runner, {first_wall:.2} ms wall",
        show(first_engine)
    );
    println!(
        "  second run (log already holds the first): {} ms outside the runner, {last_wall:.2} ms wall",
        show(last_engine)
    );
    // Wall-time figures depend on what else the machine is doing: say it.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("  load average after: {}", load.trim());
    }
    Ok(())
}
