//! Append and rebuild throughput of the event log, on SQLite and (when
//! `DGM_TEST_POSTGRES_URL` is set) PostgreSQL.
//!
//! `cargo run --release -p dgm-perf --bin log_throughput [-- EVENTS] [--rebuilds N] [--only sqlite|postgres]`
//!
//! `EVENTS` (default 50,000) are appended in commits of 100, after 1,000
//! single-event commits; then every view is rebuilt `N` times (default 1)
//! from the same log, each timed, with the median when `N` > 1 (the first
//! rebuild writes into empty views; later ones also empty the views the one
//! before wrote). On PostgreSQL the log is vacuumed between the appends and
//! the rebuilds, as autovacuum would have done on a standing database. Each
//! rebuild also reports the CPU time it took, all threads
//! together: on a busy machine that is easier to compare than the rate.

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

/// CPU time this process has used so far (all threads, user and system),
/// in clock ticks of 10 ms; `None` where `/proc` does not say.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses;
    // utime and stime are the 14th and 15th fields of the line.
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split(' ');
    let user: f64 = fields.nth(11)?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / 100.0)
}

const USAGE: &str = "usage: log_throughput [EVENTS] [--rebuilds N] [--only sqlite|postgres]";

struct Args {
    events: usize,
    rebuilds: usize,
    only: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        events: 50_000,
        rebuilds: 1,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--rebuilds" => {
                args.rebuilds = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or("--rebuilds needs a positive count")?;
            }
            "--only" => {
                let only = it.next().ok_or("--only needs sqlite or postgres")?;
                if only != "sqlite" && only != "postgres" {
                    return Err(format!("--only {only}: not sqlite or postgres"));
                }
                args.only = Some(only);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            n => {
                args.events = n
                    .parse()
                    .map_err(|_| format!("`{n}` is not a number of events"))?;
            }
        }
    }
    Ok(args)
}

/// Brings a PostgreSQL log to the state it has on a database that has been
/// up a while: what autovacuum does to freshly inserted rows some time
/// after a bulk insert (hint bits, visibility map, statistics) is done now,
/// instead of in the background of the first rebuilds, where it would bill
/// them for the appends.
async fn settle(name: &str, url: &str) {
    let pool = sqlx::PgPool::connect(url).await.expect("postgres");
    let (result, took) = timed(sqlx::raw_sql("VACUUM (ANALYZE) events").execute(&pool)).await;
    result.expect("vacuum");
    println!("{name}: VACUUM (ANALYZE) events in {took:.2?}");
    pool.close().await;
}

async fn measure(
    name: &str,
    store: Store,
    postgres: Option<&str>,
    batched_events: usize,
    rebuilds: usize,
) {
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
    if let Some(url) = postgres {
        settle(name, url).await;
    }
    // Rebuild every projection from position 0.
    let total = store.head().await.expect("head") as usize;
    let mut rates = Vec::new();
    for _ in 0..rebuilds {
        let cpu = cpu_seconds();
        let (result, took) = timed(dgm_projections::rebuild_all(&store)).await;
        result.expect("rebuild");
        let cpu = cpu_seconds().zip(cpu).map(|(after, before)| after - before);
        rates.push(rate(total, took));
        println!(
            "{name}: rebuild all views  {:>8} events/s  ({total} events in {took:.2?}{})",
            rate(total, took),
            cpu.map(|s| format!(", {s:.2} s of CPU"))
                .unwrap_or_default()
        );
    }
    if rebuilds > 1 {
        rates.sort_unstable();
        println!(
            "{name}: rebuild, median   {:>8} events/s  (of {rebuilds})",
            rates[rates.len() / 2]
        );
    }
}

#[tokio::main]
async fn main() {
    let args = match args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let only = args.only.as_deref();
    if only != Some("postgres") {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&sqlite_url(dir.path())).await.expect("sqlite");
        measure("sqlite  ", store, None, args.events, args.rebuilds).await;
    }
    if only != Some("sqlite")
        && let Some(url) = fresh_postgres_url("log_throughput").await
    {
        let store = Store::open(&StoreUrl::Postgres(url.clone()))
            .await
            .expect("postgres");
        measure("postgres", store, Some(&url), args.events, args.rebuilds).await;
    }
}
