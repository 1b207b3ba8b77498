//! One conformance suite for the event log, run against SQLite and PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Arc;

use dgm_events::testing::{fresh_postgres_url, sqlite_url};
use dgm_events::views::{RowBatch, RowChunks, ViewChange, ViewRows, ViewSnapshot};
use dgm_events::*;

/// Opens a fresh store of each kind and runs `$body` with it.
macro_rules! conformance {
    ($($name:ident => $body:expr;)*) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = Store::open(&sqlite_url(dir.path())).await.unwrap();
                    ($body)(Arc::new(store)).await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(url) = fresh_postgres_url(stringify!($name)).await else { return };
                    let store = Store::open(&StoreUrl::Postgres(url)).await.unwrap();
                    ($body)(Arc::new(store)).await;
                }
            )*
        }
    };
}

fn manifest(name: &str) -> AgentManifest {
    AgentManifest {
        name: name.into(),
        language: "python".into(),
        description: String::new(),
        run: vec!["python3".into(), "main.py".into()],
        evolvable: vec!["*.py".into()],
        protected: vec![],
        suite: None,
    }
}

fn files(text: &str) -> Files {
    let mut f = Files::new();
    f.insert("main.py".into(), text.as_bytes().to_vec());
    f
}

async fn register(store: &Store, name: &str) -> String {
    let tree = files("print(1)\n");
    let hash = store.put_tree(&tree).await.unwrap();
    let version = hash[..12].to_string();
    store
        .agent(
            name,
            AgentCommand::Register {
                manifest: manifest(name),
                source: None,
                seed: VersionCreated {
                    agent: name.into(),
                    version: version.clone(),
                    parent: None,
                    tree_hash: hash,
                    patch: String::new(),
                    origin: Origin::Seed,
                    summary: "seed".into(),
                },
            },
            &Metadata::new("test"),
        )
        .await
        .unwrap();
    version
}

fn trajectory_event(eval: &str, i: usize) -> Event {
    TrajectoryRecorded {
        evaluation_id: eval.into(),
        trajectory: Trajectory {
            agent: "a".into(),
            version: "v".into(),
            suite: "s".into(),
            task: format!("t{i}"),
            tags: vec![],
            outcome: "success".into(),
            score: Some(1.0),
            error_category: None,
            rationale: None,
            log_excerpt: String::new(),
            stdout_blob: None,
            stderr_blob: None,
            wall_ms: 1,
            cpu_ms: 1,
            peak_memory_bytes: None,
            tokens: None,
            cost_usd: None,
        },
    }
    .into()
}

fn started(eval: &str) -> Event {
    BenchmarkStarted {
        evaluation_id: eval.into(),
        agent: None,
        version: None,
        suite: "s".into(),
        stage: 0,
        split: "train".into(),
        tasks: 1,
    }
    .into()
}

async fn assert_gapless(store: &Store) -> Vec<Recorded> {
    let all = store.read_all(None).await.unwrap();
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.position, i as u64 + 1, "positions must be gapless");
    }
    assert_eq!(store.head().await.unwrap(), all.len() as u64);
    all
}

conformance! {
    concurrent_appenders_on_many_aggregates => |store: Arc<Store>| async move {
        // 8 writers × 25 commits, each its own evaluation stream, while a
        // reader tails by position.
        let writers = 8;
        let commits = 25;
        let expected = writers * commits * 2;
        let reader = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut after = 0;
                while seen.len() < expected {
                    let page = store.read(after, None, 1000).await.unwrap();
                    for r in page {
                        assert_eq!(r.position, after + 1, "tailing reader skipped an event");
                        after = r.position;
                        seen.push(r);
                    }
                    tokio::task::yield_now().await;
                }
                seen
            })
        };
        let mut handles = Vec::new();
        for w in 0..writers {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                for c in 0..commits {
                    let id = format!("w{w}-c{c}");
                    store
                        .append(StreamType::Evaluation, &id, vec![started(&id), trajectory_event(&id, c)], &Metadata::new("test"))
                        .await
                        .unwrap();
                }
            }));
        }
        for h in handles { h.await.unwrap(); }
        let seen = tokio::time::timeout(std::time::Duration::from_secs(60), reader).await.unwrap().unwrap();
        let all = assert_gapless(&store).await;
        assert_eq!(all.len(), expected);
        assert_eq!(seen, all);
        // each stream's two events are adjacent: a commit is atomic
        for pair in all.chunks(2) {
            assert_eq!(pair[0].aggregate_id, pair[1].aggregate_id);
        }
    };

    concurrent_appenders_on_one_aggregate => |store: Arc<Store>| async move {
        let seed = register(&store, "a").await;
        let mut handles = Vec::new();
        for w in 0..6 {
            let store = store.clone();
            let seed = seed.clone();
            handles.push(tokio::spawn(async move {
                for c in 0..5 {
                    let tree = files(&format!("print({w}, {c})\n"));
                    let hash = store.put_tree(&tree).await.unwrap();
                    store.agent("a", AgentCommand::CreateVersion(VersionCreated {
                        agent: "a".into(), version: hash[..12].to_string(), parent: Some(seed.clone()),
                        tree_hash: hash, patch: String::new(), origin: Origin::Proposer, summary: String::new(),
                    }), &Metadata::new("test")).await.unwrap();
                }
            }));
        }
        for h in handles { h.await.unwrap(); }
        let all = assert_gapless(&store).await;
        let created: Vec<_> = all.iter().filter(|r| matches!(r.event, Event::VersionCreated(_))).collect();
        assert_eq!(created.len(), 31, "every version exactly once (30 + seed)");
        let sequences: Vec<u64> = all.iter().map(|r| r.sequence).collect();
        assert_eq!(sequences, (1..=all.len() as u64).collect::<Vec<_>>(), "per-aggregate sequence has no holes");
    };

    commands_are_validated => |store: Arc<Store>| async move {
        let err = store.agent("ghost", AgentCommand::Admit { version: "x".into(), reason: String::new() }, &Metadata::new("t")).await.unwrap_err();
        assert!(err.to_string().contains("ghost"), "{err}");
        register(&store, "a").await;
        let again = store.agent("a", AgentCommand::Register { manifest: manifest("a"), source: None, seed: VersionCreated {
            agent: "a".into(), version: "x".into(), parent: None, tree_hash: "h".into(), patch: String::new(), origin: Origin::Seed, summary: String::new() } }, &Metadata::new("t")).await;
        assert!(matches!(again, Err(StoreError::Command(CommandError::AlreadyRegistered(_)))));
        let bad_parent = store.agent("a", AgentCommand::CreateVersion(VersionCreated {
            agent: "a".into(), version: "y".into(), parent: Some("nope".into()), tree_hash: "h".into(), patch: String::new(), origin: Origin::Proposer, summary: String::new() }), &Metadata::new("t")).await;
        assert!(matches!(bad_parent, Err(StoreError::Command(CommandError::UnknownVersion { .. }))));
        // a closed stream takes no more events
        store.append(StreamType::Run, "r1", vec![RunStarted { run_id: "r1".into(), agent: "a".into(), suite: "s".into(), config: serde_json::json!({}) }.into(),
            RunCompleted { run_id: "r1".into(), summary: serde_json::json!({}) }.into()], &Metadata::new("t")).await.unwrap();
        let late = store.append(StreamType::Run, "r1", vec![RunFailed { run_id: "r1".into(), error: "x".into() }.into()], &Metadata::new("t")).await;
        assert!(late.is_err());
    };

    rollback_appends => |store: Arc<Store>| async move {
        let seed = register(&store, "a").await;
        let tree = files("print(2)\n");
        let hash = store.put_tree(&tree).await.unwrap();
        let child = hash[..12].to_string();
        store.agent("a", AgentCommand::CreateVersion(VersionCreated { agent: "a".into(), version: child.clone(), parent: Some(seed.clone()),
            tree_hash: hash, patch: String::new(), origin: Origin::Proposer, summary: String::new() }), &Metadata::new("t")).await.unwrap();
        store.agent("a", AgentCommand::Activate { version: child.clone(), reason: "better".into() }, &Metadata::new("t")).await.unwrap();
        let before = store.head().await.unwrap();
        store.agent("a", AgentCommand::Rollback { to_version: seed.clone(), to_event: None, reason: "regressed".into() }, &Metadata::new("t")).await.unwrap();
        let all = assert_gapless(&store).await;
        assert_eq!(all.len() as u64, before + 1);
        match &all.last().unwrap().event {
            Event::RolledBack(r) => { assert_eq!(r.from.as_deref(), Some(child.as_str())); assert_eq!(r.to_version, seed); }
            other => panic!("{other:?}"),
        }
    };

    blobs_round_trip => |store: Arc<Store>| async move {
        let mut tree = files("print(1)\n");
        tree.insert("sub/data.bin".into(), vec![0, 159, 146, 150, 255]);
        let hash = store.put_tree(&tree).await.unwrap();
        assert_eq!(hash, dgm_events::blobs::tree_hash(&tree));
        assert_eq!(store.put_tree(&tree).await.unwrap(), hash, "idempotent");
        assert_eq!(store.get_tree(&hash).await.unwrap(), tree);
        let big = vec![7u8; 3 * 1024 * 1024];
        let h = store.put_blob(&big).await.unwrap();
        assert_eq!(store.get_blob(&h).await.unwrap(), big);
        assert!(matches!(store.get_blob("00").await, Err(StoreError::MissingBlob(_))));
    };

    // A view's rows come back exactly as written (any character in keys and
    // values), through incremental saves, rebuilds (the first one and later
    // ones: on PostgreSQL the first moves the view into a partition of its
    // own, later ones swap in a new one) and failed rebuilds, which change
    // nothing.
    views_are_stored_exactly => |store: Arc<Store>| async move {
        let odd = [("tab\tkey", "{\"v\":\"a\\tb\"}"), ("line\nkey", "back\\slash\\N"), ("ünï", ""), ("'quote'", "\r\n")];
        let plain = [("k1", "1"), ("k2", "2")];
        for view in ["plain_view", "default", "Odd View-Name"] {
            let change = ViewChange { upserts: vec![("old".into(), "0".into())], deletes: vec![] };
            assert!(store.save_view(view, 0, 1, &change).await.unwrap());
            let err = store.replace_view(view, &mut failing(&plain)).await.unwrap_err();
            assert!(err.to_string().contains("the fold failed"), "{err}");
            assert_eq!(store.load_view(view).await.unwrap(), snapshot(&[("old", "0")], 1), "{view}");
            assert_eq!(store.replace_view(view, &mut chunks(&odd, 5)).await.unwrap(), 5);
            assert_eq!(store.load_view(view).await.unwrap(), snapshot(&odd, 5), "{view}");
            assert_eq!(store.replace_view(view, &mut chunks(&plain, 7)).await.unwrap(), 7);
            assert_eq!(store.load_view(view).await.unwrap(), snapshot(&plain, 7), "{view}");
            store.replace_view(view, &mut failing(&odd)).await.unwrap_err();
            assert_eq!(store.load_view(view).await.unwrap(), snapshot(&plain, 7), "{view}");
            let change = ViewChange { upserts: vec![("k3".into(), "3".into())], deletes: vec!["k1".into()] };
            assert!(!store.save_view(view, 5, 8, &change).await.unwrap(), "a stale checkpoint");
            assert!(store.save_view(view, 7, 8, &change).await.unwrap());
            assert_eq!(store.load_view(view).await.unwrap(), snapshot(&[("k2", "2"), ("k3", "3")], 8), "{view}");
        }
        store.clear_view("plain_view").await.unwrap();
        assert_eq!(store.load_view("plain_view").await.unwrap(), snapshot(&[], 0));
        for view in ["default", "Odd View-Name"] {
            assert_eq!(store.load_view(view).await.unwrap(), snapshot(&[("k2", "2"), ("k3", "3")], 8), "{view}");
        }
    };

    metadata_is_kept => |store: Arc<Store>| async move {
        let meta = Metadata::new("agent:a").with_run("run-1").with_attempt("att-2").caused_by("17");
        store.append(StreamType::Run, "run-1", vec![RunStarted { run_id: "run-1".into(), agent: "a".into(), suite: "s".into(), config: serde_json::json!({"k": [1, 2]}) }.into()], &meta).await.unwrap();
        let all = store.read_all(None).await.unwrap();
        assert_eq!(all[0].metadata, meta);
        let _ = BTreeMap::<String, f64>::new();
    };
}

/// Opens two stores on one fresh database of each kind (as two processes
/// would) and runs `$body` with them.
macro_rules! two_stores {
    ($($name:ident => $body:expr;)*) => {
        mod sqlite_two_stores {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = sqlite_url(dir.path());
                    let a = Store::open(&url).await.unwrap();
                    let b = Store::open(&url).await.unwrap();
                    ($body)(Arc::new(a), Arc::new(b)).await;
                }
            )*
        }
        mod postgres_two_stores {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(url) = fresh_postgres_url(stringify!($name)).await else { return };
                    let a = Store::open(&StoreUrl::Postgres(url.clone())).await.unwrap();
                    let b = Store::open(&StoreUrl::Postgres(url)).await.unwrap();
                    ($body)(Arc::new(a), Arc::new(b)).await;
                }
            )*
        }
    };
}

/// Hands [`Store::replace_view`] prepared chunks, or an error in their place.
struct Chunks(std::collections::VecDeque<Result<ViewRows, StoreError>>);

impl RowChunks for Chunks {
    async fn next_chunk(&mut self) -> Result<ViewRows, StoreError> {
        self.0
            .pop_front()
            .unwrap_or_else(|| Err(StoreError::Database("asked past the end".into())))
    }
}

fn batch(rows: &[(&str, &str)]) -> RowBatch {
    let mut batch = RowBatch::with_capacity(rows.len(), 0);
    for (key, value) in rows {
        batch.push(key, value);
    }
    batch
}

/// `rows` in two chunks, then the end at `checkpoint`.
fn chunks(rows: &[(&str, &str)], checkpoint: u64) -> Chunks {
    let (first, second) = rows.split_at(rows.len() / 2);
    Chunks(
        [
            Ok(ViewRows::Chunk(batch(first))),
            Ok(ViewRows::Chunk(batch(second))),
            Ok(ViewRows::End { checkpoint }),
        ]
        .into(),
    )
}

/// `rows`, then an error instead of the end: the rebuild must roll back.
fn failing(rows: &[(&str, &str)]) -> Chunks {
    Chunks(
        [
            Ok(ViewRows::Chunk(batch(rows))),
            Err(StoreError::Database("the fold failed".into())),
        ]
        .into(),
    )
}

fn snapshot(rows: &[(&str, &str)], checkpoint: u64) -> ViewSnapshot {
    ViewSnapshot {
        checkpoint,
        rows: rows
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
    }
}

fn child(agent: &str, version: &str, parent: &str) -> AgentCommand {
    AgentCommand::CreateVersion(VersionCreated {
        agent: agent.into(),
        version: version.into(),
        parent: Some(parent.into()),
        tree_hash: "h".into(),
        patch: String::new(),
        origin: Origin::Proposer,
        summary: String::new(),
    })
}

fn run_event(run: &str, what: &str) -> Event {
    match what {
        "start" => RunStarted {
            run_id: run.into(),
            agent: "a".into(),
            suite: "s".into(),
            config: serde_json::json!({}),
        }
        .into(),
        "end" => RunCompleted {
            run_id: run.into(),
            summary: serde_json::json!({}),
        }
        .into(),
        attempt => AttemptStarted {
            run_id: run.into(),
            attempt_id: format!("{run}/{attempt}"),
            generation: 1,
            index: 0,
            parent: "p".into(),
            donor: None,
            selection: "dgm".into(),
            weights: Default::default(),
            seed: 0,
        }
        .into(),
    }
}

two_stores! {
    // Each store keeps the aggregates it folded in memory: taking turns on
    // one stream, every command must still be judged on the latest state,
    // and no sequence may be lost or repeated.
    alternating_writers_judge_on_the_latest_state => |a: Arc<Store>, b: Arc<Store>| async move {
        let meta = Metadata::new("test");
        let seed = register(&a, "x").await;
        // b has never seen the agent; a's state does not know v1.
        b.agent("x", child("x", "v1", &seed), &meta).await.unwrap();
        a.agent("x", child("x", "v2", "v1"), &meta).await.unwrap();
        b.agent("x", child("x", "v3", "v2"), &meta).await.unwrap();
        // Each refuses what the other made a duplicate of.
        let dup = a.agent("x", child("x", "v3", &seed), &meta).await;
        assert!(matches!(dup, Err(StoreError::Command(CommandError::DuplicateVersion { .. }))), "{dup:?}");
        let dup = b.agent("x", child("x", "v2", &seed), &meta).await;
        assert!(matches!(dup, Err(StoreError::Command(CommandError::DuplicateVersion { .. }))), "{dup:?}");
        a.agent("x", AgentCommand::Reject { version: "v3".into(), reason: "bad".into() }, &meta).await.unwrap();
        // b still holds v3 as fine in memory; the log says rejected.
        let refused = b.agent("x", AgentCommand::Activate { version: "v3".into(), reason: String::new() }, &meta).await;
        assert!(matches!(refused, Err(StoreError::Command(CommandError::RejectedVersion { .. }))), "{refused:?}");
        b.agent("x", AgentCommand::Activate { version: "v2".into(), reason: String::new() }, &meta).await.unwrap();

        // A run stream: one ends it, the other's kept state says open.
        a.append(StreamType::Run, "r", vec![run_event("r", "start")], &meta).await.unwrap();
        b.append(StreamType::Run, "r", vec![run_event("r", "a0")], &meta).await.unwrap();
        a.append(StreamType::Run, "r", vec![run_event("r", "a1")], &meta).await.unwrap();
        b.append(StreamType::Run, "r", vec![run_event("r", "a2")], &meta).await.unwrap();
        a.append(StreamType::Run, "r", vec![run_event("r", "end")], &meta).await.unwrap();
        let late = b.append(StreamType::Run, "r", vec![run_event("r", "a3")], &meta).await;
        assert!(late.is_err(), "appended to an ended run: {late:?}");

        let all = assert_gapless(&a).await;
        for (kind, id) in [("agent", "x"), ("run", "r")] {
            let sequences: Vec<u64> = all.iter()
                .filter(|r| r.aggregate_type == kind && r.aggregate_id == id)
                .map(|r| r.sequence).collect();
            assert_eq!(sequences, (1..=sequences.len() as u64).collect::<Vec<_>>(), "{kind} {id}");
        }
        let created: Vec<&str> = all.iter().filter_map(|r| match &r.event {
            Event::VersionCreated(v) => Some(v.version.as_str()), _ => None }).collect();
        assert_eq!(created, [seed.as_str(), "v1", "v2", "v3"]);
        let runs = all.iter().filter(|r| r.aggregate_type == "run").count();
        assert_eq!(runs, 5, "start, three attempts, end");
    };

    // Two stores appending concurrently to one stream.
    concurrent_stores_on_one_stream => |a: Arc<Store>, b: Arc<Store>| async move {
        let meta = Metadata::new("test");
        a.append(StreamType::Run, "r", vec![run_event("r", "start")], &meta).await.unwrap();
        let mut handles = Vec::new();
        for (w, store) in [a.clone(), b.clone(), a.clone(), b.clone()].into_iter().enumerate() {
            let meta = meta.clone();
            handles.push(tokio::spawn(async move {
                for i in 0..15 {
                    store.append(StreamType::Run, "r", vec![run_event("r", &format!("w{w}-{i}"))], &meta).await.unwrap();
                }
            }));
        }
        for h in handles { h.await.unwrap(); }
        let all = assert_gapless(&b).await;
        let sequences: Vec<u64> = all.iter().map(|r| r.sequence).collect();
        assert_eq!(sequences, (1..=61).collect::<Vec<u64>>());
    };

    // What a store remembers of its own commits is exactly what reading the
    // log gives, and it says so only when no one else wrote in between.
    recent_commits_equal_the_log => |a: Arc<Store>, b: Arc<Store>| async move {
        let meta = Metadata::new("test").with_run("r");
        register(&a, "x").await;
        let head = a.head().await.unwrap();
        assert!(a.recent(head).is_none(), "the first call only starts keeping");
        a.append(StreamType::Run, "r", vec![run_event("r", "start"), run_event("r", "a0")], &meta).await.unwrap();
        a.append(StreamType::Evaluation, "e", vec![started("e"), trajectory_event("e", 0)], &meta).await.unwrap();
        a.agent("x", child("x", "v1", &a.read_all(None).await.unwrap().iter().find_map(|r| match &r.event {
            Event::VersionCreated(v) => Some(v.version.clone()), _ => None }).unwrap()), &meta).await.unwrap();
        let recent = a.recent(head).expect("all of it is this store's");
        assert_eq!(recent, a.read(head, None, 100).await.unwrap());
        assert_eq!(recent.len(), 5);
        let last = recent.last().unwrap().position;
        assert_eq!(a.recent(last), Some(vec![]));
        // Another process writes; this store learns of it at its next commit.
        b.append(StreamType::Run, "r", vec![run_event("r", "a1")], &meta).await.unwrap();
        a.append(StreamType::Run, "r", vec![run_event("r", "a2")], &meta).await.unwrap();
        assert!(a.recent(last).is_none(), "a gap: read the log");
        let read = a.read(last, None, 100).await.unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(a.recent(read[0].position).unwrap(), read[1..].to_vec());
    };
}

/// Unknown versions and corrupt payloads are clear errors, not panics.
#[tokio::test]
async fn unreadable_events_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let store = Store::open(&url).await.unwrap();
    register(&store, "a").await;
    let StoreUrl::Sqlite(path) = &url else {
        unreachable!()
    };
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('agent','zz',1,'AgentRegistered','7','{}','{}')")
        .execute(&pool).await.unwrap();
    let err = store.read_all(None).await.unwrap_err().to_string();
    assert!(
        err.contains("position 5") && err.contains("upgrade dgm"),
        "{err}"
    );
    sqlx::query("INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('agent','zz',2,'VersionAdmitted','1','{not json','{}')")
        .execute(&pool).await.unwrap();
    let err = store.read(5, None, 10).await.unwrap_err().to_string();
    assert!(
        err.contains("position 6") && err.contains("not JSON"),
        "{err}"
    );
    // history cannot be rewritten
    assert!(
        sqlx::query("DELETE FROM events")
            .execute(&pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("UPDATE events SET payload = '{}'")
            .execute(&pool)
            .await
            .is_err()
    );
}

/// A database written by a dgm of schema version 2 (positions filled by a
/// trigger, a separate position index) opens, keeps its history and goes on.
#[tokio::test]
async fn version_2_sqlite_database_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let StoreUrl::Sqlite(path) = &url else {
        unreachable!()
    };
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::raw_sql(include_str!("../../migrations/sqlite/0001_event_log.sql"))
            .execute(&pool)
            .await
            .unwrap();
        sqlx::raw_sql(include_str!(
            "../../migrations/sqlite/0002_batched_positions.sql"
        ))
        .execute(&pool)
        .await
        .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE dgm_schema (version integer PRIMARY KEY) STRICT;
             INSERT INTO dgm_schema (version) VALUES (1), (2);",
        )
        .execute(&pool)
        .await
        .unwrap();
        let meta = r#"{"actor":"old","correlation_id":"c","time":"2025-01-01T00:00:00.000000Z"}"#;
        for (sequence, event) in [started("e1"), trajectory_event("e1", 1)]
            .iter()
            .enumerate()
        {
            sqlx::query("INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('evaluation', 'e1', ?, ?, '1', ?, ?)")
                .bind(sequence as i64 + 1)
                .bind(event.event_type())
                .bind(serde_json::to_string(event).unwrap())
                .bind(meta)
                .execute(&pool)
                .await
                .unwrap();
        }
        sqlx::query("INSERT INTO view_rows (view, key, value) VALUES ('v', 'k', '{}')")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO view_checkpoints (view, position) VALUES ('v', 2)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let store = Store::open(&url).await.unwrap();
    let before = assert_gapless(&store).await;
    assert_eq!(before.len(), 2);
    assert_eq!(before[0].metadata.actor, "old");
    assert_eq!(before[1].event, trajectory_event("e1", 1));
    let view = store.load_view("v").await.unwrap();
    assert_eq!((view.checkpoint, view.rows["k"].as_str()), (2, "{}"));
    store
        .append(
            StreamType::Evaluation,
            "e1",
            vec![trajectory_event("e1", 2)],
            &Metadata::new("new"),
        )
        .await
        .unwrap();
    let after = assert_gapless(&store).await;
    assert_eq!((after[2].position, after[2].sequence), (3, 3));
    // a stale sequence is still a conflict, and history still cannot change
    let StoreUrl::Sqlite(path) = &url else {
        unreachable!()
    };
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let duplicate = sqlx::query("INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('evaluation', 'e1', 3, 'x', '1', '{}', '{}')")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(
        duplicate
            .as_database_error()
            .is_some_and(|e| e.is_unique_violation()),
        "{duplicate}"
    );
    assert!(
        sqlx::query("UPDATE events SET position = 99")
            .execute(&pool)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    drop(Store::open(&url).await.unwrap());
    let StoreUrl::Sqlite(path) = &url else {
        unreachable!()
    };
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("INSERT INTO dgm_schema (version) VALUES (99)")
        .execute(&pool)
        .await
        .unwrap();
    let err = Store::open(&url).await.err().unwrap().to_string();
    assert!(err.contains("99") && err.contains("upgrade dgm"), "{err}");
}

#[tokio::test]
async fn unreachable_postgres_is_one_line() {
    let err = Store::open(&StoreUrl::Postgres(
        "postgres://u:secret@127.0.0.1:1/db".into(),
    ))
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.starts_with("cannot open postgres://u:***@127.0.0.1:1/db"),
        "{err}"
    );
    assert!(!err.contains("secret") && !err.contains('\n'), "{err}");
}

/// On PostgreSQL a view's first rebuild moves its rows out of the default
/// partition into one of its own, which later rebuilds replace with a table
/// they filled; two processes rebuilding a new view at once both succeed,
/// one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_views_get_partitions_of_their_own() {
    let Some(url) = fresh_postgres_url("postgres_views_get_partitions_of_their_own").await else {
        return;
    };
    let store = Store::open(&StoreUrl::Postgres(url.clone())).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let change = ViewChange {
        upserts: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
        deletes: vec![],
    };
    assert!(store.save_view("a_view", 0, 3, &change).await.unwrap());
    assert!(store.save_view("other", 0, 3, &change).await.unwrap());
    assert_eq!(
        count("SELECT count(*) FROM view_rows_default WHERE view = 'a_view'").await,
        2
    );
    store
        .replace_view("a_view", &mut chunks(&[("c", "3")], 4))
        .await
        .unwrap();
    assert_eq!(
        count("SELECT count(*) FROM view_rows_default WHERE view = 'a_view'").await,
        0
    );
    assert_eq!(count("SELECT count(*) FROM view_rows_for_a_view").await, 1);
    store
        .replace_view("a_view", &mut chunks(&[("d", "4"), ("e", "5")], 5))
        .await
        .unwrap();
    assert_eq!(count("SELECT count(*) FROM view_rows_for_a_view").await, 2);
    // Later rebuilds swap a new table in: it keeps the partition's names and
    // one index, and nothing is left behind, however often it is done.
    store
        .replace_view("a_view", &mut chunks(&[("f", "6")], 6))
        .await
        .unwrap();
    assert_eq!(
        store.load_view("a_view").await.unwrap(),
        snapshot(&[("f", "6")], 6)
    );
    assert_eq!(
        count("SELECT count(*) FROM pg_indexes WHERE tablename = 'view_rows_for_a_view' AND indexname = 'view_rows_for_a_view_pkey'").await,
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM pg_indexes WHERE tablename = 'view_rows_for_a_view'").await,
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM pg_class WHERE relname LIKE 'view\\_rows\\_for\\_%\\_new%'")
            .await,
        0
    );
    assert_eq!(
        store.load_view("other").await.unwrap(),
        snapshot(&[("a", "1"), ("b", "2")], 3)
    );

    // Two stores (two processes) rebuild one new view at once.
    let second = Store::open(&StoreUrl::Postgres(url)).await.unwrap();
    let one = [("x", "1"), ("y", "1")];
    let two = [("x", "2"), ("z", "2")];
    let (mut rows_one, mut rows_two) = (chunks(&one, 6), chunks(&two, 6));
    let (a, b) = tokio::join!(
        store.replace_view("raced", &mut rows_one),
        second.replace_view("raced", &mut rows_two),
    );
    a.unwrap();
    b.unwrap();
    let raced = store.load_view("raced").await.unwrap();
    assert!(
        raced == snapshot(&one, 6) || raced == snapshot(&two, 6),
        "{raced:?}"
    );
    assert_eq!(
        count("SELECT count(*) FROM pg_inherits WHERE inhparent = 'view_rows'::regclass").await,
        3,
        "default, a_view and raced"
    );
}

/// A PostgreSQL database of schema version 3 (one unpartitioned table of
/// view rows) opens with its views intact, and they rebuild as usual.
#[tokio::test]
async fn version_3_postgres_database_is_upgraded() {
    let Some(url) = fresh_postgres_url("version_3_postgres_database_is_upgraded").await else {
        return;
    };
    {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        for sql in [
            include_str!("../../migrations/postgres/0001_event_log.sql"),
            include_str!("../../migrations/postgres/0002_batched_positions.sql"),
            include_str!("../../migrations/postgres/0003_position_trigger_only_when_missing.sql"),
            "CREATE TABLE dgm_schema (version bigint PRIMARY KEY);
             INSERT INTO dgm_schema (version) VALUES (1), (2), (3);
             INSERT INTO view_rows (view, key, value) VALUES ('v', 'k', '{}'), ('w', 'k', '[]');
             INSERT INTO view_checkpoints (view, position) VALUES ('v', 2), ('w', 2);",
        ] {
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let store = Store::open(&StoreUrl::Postgres(url)).await.unwrap();
    assert_eq!(
        store.load_view("v").await.unwrap(),
        snapshot(&[("k", "{}")], 2)
    );
    store
        .replace_view("v", &mut chunks(&[("k", "1"), ("l", "2")], 3))
        .await
        .unwrap();
    assert_eq!(
        store.load_view("v").await.unwrap(),
        snapshot(&[("k", "1"), ("l", "2")], 3)
    );
    assert_eq!(
        store.load_view("w").await.unwrap(),
        snapshot(&[("k", "[]")], 2)
    );
}

/// Hands one chunk, says so, and ends only when released: a rebuild caught
/// in the middle of writing its view.
struct Paused {
    first: Option<RowBatch>,
    started: Option<tokio::sync::oneshot::Sender<()>>,
    release: Option<tokio::sync::oneshot::Receiver<()>>,
    checkpoint: u64,
}

impl Paused {
    /// `rows`, ending at `checkpoint`; with the receiver told once they are
    /// written and the sender that lets the rebuild end.
    fn new(
        rows: &[(&str, &str)],
        checkpoint: u64,
    ) -> (
        Self,
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (started, has_started) = tokio::sync::oneshot::channel();
        let (release, released) = tokio::sync::oneshot::channel();
        let paused = Paused {
            first: Some(batch(rows)),
            started: Some(started),
            release: Some(released),
            checkpoint,
        };
        (paused, has_started, release)
    }
}

impl RowChunks for Paused {
    async fn next_chunk(&mut self) -> Result<ViewRows, StoreError> {
        if let Some(batch) = self.first.take() {
            return Ok(ViewRows::Chunk(batch));
        }
        if let Some(started) = self.started.take() {
            let _ = started.send(());
        }
        if let Some(release) = self.release.take() {
            let _ = release.await;
        }
        Ok(ViewRows::End {
            checkpoint: self.checkpoint,
        })
    }
}

/// A rebuild of a view in one process and a catch-up of it in another, at
/// once: the catch-up waits for the rebuild, then finds the checkpoint moved
/// and says so — neither deadlocks nor fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rebuild_and_catch_up_at_once() {
    let Some(url) = fresh_postgres_url("postgres_rebuild_and_catch_up_at_once").await else {
        return;
    };
    let rebuilder = Store::open(&StoreUrl::Postgres(url.clone())).await.unwrap();
    let catcher = Arc::new(Store::open(&StoreUrl::Postgres(url.clone())).await.unwrap());
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    // A first rebuild gives the view its partition; the second is paused.
    rebuilder
        .replace_view("v", &mut chunks(&[("k", "1")], 1))
        .await
        .unwrap();
    let (mut rows, has_started, release) = Paused::new(&[("k", "2")], 2);
    let driver = async {
        has_started.await.unwrap();
        let catch_up = tokio::spawn({
            let catcher = catcher.clone();
            async move {
                let change = ViewChange {
                    upserts: vec![("k".into(), "3".into())],
                    deletes: vec![],
                };
                catcher.save_view("v", 1, 3, &change).await
            }
        });
        let waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted";
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while sqlx::query_scalar::<_, i64>(waiting)
            .fetch_one(&pool)
            .await
            .unwrap()
            == 0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the catch-up never met the rebuild"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        release.send(()).unwrap();
        catch_up.await.unwrap()
    };
    let (rebuilt, caught_up) = tokio::join!(rebuilder.replace_view("v", &mut rows), driver);
    assert_eq!(rebuilt.unwrap(), 2);
    assert!(
        !caught_up.unwrap(),
        "the checkpoint moved under the catch-up"
    );
    assert_eq!(
        rebuilder.load_view("v").await.unwrap(),
        snapshot(&[("k", "2")], 2)
    );
}

/// A view's first rebuild on PostgreSQL creates its partition in a short
/// transaction of its own: while the rebuild runs, other views can still be
/// written (creating a partition locks all of `view_rows` until commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_first_rebuild_leaves_other_views_writable() {
    let Some(url) = fresh_postgres_url("postgres_first_rebuild_leaves_other_views_writable").await
    else {
        return;
    };
    let rebuilder = Store::open(&StoreUrl::Postgres(url.clone())).await.unwrap();
    let writer = Store::open(&StoreUrl::Postgres(url)).await.unwrap();
    let (mut rows, has_started, release) = Paused::new(&[("k", "1")], 1);
    let other = async {
        has_started.await.unwrap();
        let change = ViewChange {
            upserts: vec![("a".into(), "1".into())],
            deletes: vec![],
        };
        let saved = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            writer.save_view("other", 0, 1, &change),
        )
        .await;
        release.send(()).unwrap();
        saved
    };
    let (rebuilt, saved) = tokio::join!(rebuilder.replace_view("fresh", &mut rows), other);
    assert_eq!(rebuilt.unwrap(), 1);
    assert!(
        saved
            .expect("another view stayed locked while `fresh` was rebuilt")
            .unwrap(),
        "saved"
    );
    assert_eq!(
        rebuilder.load_view("fresh").await.unwrap(),
        snapshot(&[("k", "1")], 1)
    );
}
