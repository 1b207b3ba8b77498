//! Append and rebuild throughput of the event log, on SQLite and (when
//! `DGM_TEST_POSTGRES_URL` is set) PostgreSQL.
//!
//! `cargo run --release -p dgm-perf --bin log_throughput [-- EVENTS]`

use dgm_events::testing::{fresh_postgres_url, sqlite_url};
use dgm_events::*;
use dgm_perf::{rate, timed};

fn trajectory(eval: &str, i: usize) -> Event {
    TrajectoryRecorded {
        evaluation_id: eval.into(),
        trajectory: Trajectory {
            agent: "bench".into(),
            version: "v1".into(),
            suite: "binpack".into(),
            task: format!("task-{i}"),
            tags: vec!["or".into()],
            outcome: if i.is_multiple_of(3) {
                "failure"
            } else {
                "success"
            }
            .into(),
            score: Some(0.95),
            error_category: i.is_multiple_of(3).then(|| "wrong_answer".into()),
            rationale: None,
            log_excerpt: "ok".into(),
            stdout_blob: None,
            stderr_blob: None,
            wall_ms: 12,
            cpu_ms: 10,
            peak_memory_bytes: Some(1 << 20),
            tokens: None,
            cost_usd: None,
        },
    }
    .into()
}

fn started(eval: &str) -> Event {
    BenchmarkStarted {
        evaluation_id: eval.into(),
        agent: Some("bench".into()),
        version: Some("v1".into()),
        suite: "binpack".into(),
        stage: 1,
        split: "train".into(),
        tasks: 100,
    }
    .into()
}

async fn measure(name: &str, store: Store, batched_events: usize) {
    let meta = Metadata::new("bench");
    // One event per commit.
    let singles = 1_000;
    let ((), took) = timed(async {
        for i in 0..singles {
            let id = format!("single-{i}");
            store
                .append(StreamType::Evaluation, &id, vec![started(&id)], &meta)
                .await
                .expect("append");
        }
    })
    .await;
    println!(
        "{name}: 1 event/commit     {:>8} events/s  ({singles} events in {took:.2?})",
        rate(singles, took)
    );
    // Batches of 100.
    let batches = batched_events / 100;
    let ((), took) = timed(async {
        for b in 0..batches {
            let id = format!("batch-{b}");
            let mut events = vec![started(&id)];
            events.extend((1..100).map(|i| trajectory(&id, i)));
            store
                .append(StreamType::Evaluation, &id, events, &meta)
                .await
                .expect("append");
        }
    })
    .await;
    let appended = batches * 100;
    println!(
        "{name}: 100 events/commit {:>8} events/s  ({appended} events in {took:.2?})",
        rate(appended, took)
    );
    // Rebuild every projection from position 0.
    let total = store.head().await.expect("head") as usize;
    let (result, took) = timed(dgm_projections::rebuild_all(&store)).await;
    result.expect("rebuild");
    println!(
        "{name}: rebuild all views  {:>8} events/s  ({total} events in {took:.2?})",
        rate(total, took)
    );
}

#[tokio::main]
async fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&sqlite_url(dir.path())).await.expect("sqlite");
    measure("sqlite  ", store, events).await;
    if let Some(url) = fresh_postgres_url("log_throughput").await {
        let store = Store::open(&StoreUrl::Postgres(url))
            .await
            .expect("postgres");
        measure("postgres", store, events).await;
    }
}
