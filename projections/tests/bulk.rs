//! The projector's bulk paths on both back ends, on a log of several pages
//! that holds every event type: the pipelined fold (pages read while the
//! previous ones are decoded and folded on another thread), events handed by
//! value to the last view, rows encoded on several threads while they are
//! written — each must give exactly the views of a plain fold, event by
//! event, of `Store::read_all`.

use std::collections::{BTreeMap, BTreeSet};

use dgm_events::testing::{fresh_postgres_url, sqlite_url};
use dgm_events::*;
use dgm_projections::projector::{as_of, catch_up, catch_up_all, rebuild, rebuild_all};
use dgm_projections::*;

mod common;
use common::{created, manifest};

fn trajectory(round: usize, i: usize) -> Event {
    let ok = !i.is_multiple_of(3);
    TrajectoryRecorded {
        evaluation_id: format!("e-{round}"),
        trajectory: Trajectory {
            agent: "a".into(),
            version: format!("v{round}"),
            suite: "s".into(),
            task: format!("task-{i}"),
            tags: vec!["t".into(), format!("group-{}", i % 4)],
            outcome: if ok { "success" } else { "failure" }.into(),
            score: ok.then_some(i as f64 / 7.0),
            error_category: (!ok).then(|| "timeout".into()),
            rationale: i.is_multiple_of(5).then(|| format!("because {i}")),
            // What COPY's text format and JSON must both escape.
            log_excerpt: format!("line\tone\nline \\two\\ \"{i}\"\r ünïcode"),
            stdout_blob: i.is_multiple_of(2).then(|| format!("blob-{i}")),
            stderr_blob: None,
            wall_ms: i as u64,
            cpu_ms: i as u64 / 2,
            peak_memory_bytes: Some(1 << 20),
            tokens: i.is_multiple_of(7).then_some(42),
            cost_usd: i.is_multiple_of(7).then_some(0.001),
        },
    }
    .into()
}

/// Appends `rounds` rounds of a busy history (every event type, agent
/// commands interleaved with large evaluations) from round `from` on.
async fn history(store: &Store, from: usize, rounds: usize, trajectories: usize) {
    let m = Metadata::new("test");
    if from == 0 {
        for agent in ["a", "b"] {
            store
                .agent(
                    agent,
                    AgentCommand::Register {
                        manifest: manifest(agent),
                        source: Some(format!("/agents/{agent}")),
                        seed: created(agent, "v0", None),
                    },
                    &m,
                )
                .await
                .unwrap();
        }
    }
    for round in from..from + rounds {
        let version = format!("v{}", round + 1);
        let parent = format!("v{round}");
        let run = format!("run-{round}");
        let attempt = format!("{run}/0");
        let in_run = m.clone().with_run(&run).with_attempt(&attempt);
        let agent = |command| store.agent("a", command, &in_run);
        agent(AgentCommand::CreateVersion(created(
            "a",
            &version,
            Some(&parent),
        )))
        .await
        .unwrap();
        store
            .append(
                StreamType::Run,
                &run,
                vec![
                    RunStarted {
                        run_id: run.clone(),
                        agent: "a".into(),
                        suite: "s".into(),
                        config: serde_json::json!({"round": round, "nested": {"x": [1, 2.5, null]}}),
                    }
                    .into(),
                    AttemptStarted {
                        run_id: run.clone(),
                        attempt_id: attempt.clone(),
                        generation: round as u32,
                        index: 0,
                        parent: parent.clone(),
                        donor: (round % 2 == 0).then(|| "v0".into()),
                        selection: "score_child_prop".into(),
                        weights: vec![(parent.clone(), 0.75), ("v0".into(), 0.25)],
                        seed: round as u64,
                    }
                    .into(),
                    DiagnosisMade {
                        run_id: run.clone(),
                        attempt_id: attempt.clone(),
                        parent: parent.clone(),
                        summary: "slow".into(),
                        categories: BTreeMap::from([("timeout".into(), 3)]),
                        rationales: vec!["r".into()],
                        strategies: vec![format!("s-{round}")],
                        analysis: (round % 2 == 1).then(|| DiagnosisAnalysis {
                            model: "m".into(),
                            summary: "s".into(),
                            possible_improvements: vec!["p".into()],
                            chosen_proposal: "c".into(),
                            implementation_suggestion: "i".into(),
                            problem_statement: "ps".into(),
                        }),
                    }
                    .into(),
                    LlmCallMade {
                        run_id: run.clone(),
                        attempt_id: Some(attempt.clone()),
                        purpose: "propose".into(),
                        model: "m".into(),
                        prompt_tokens: 100,
                        completion_tokens: 50,
                        latency_ms: 12,
                        cost_usd: 0.01,
                        outcome: "ok".into(),
                        error: None,
                    }
                    .into(),
                ],
                &in_run,
            )
            .await
            .unwrap();
        let eval = format!("e-{round}");
        let mut events: Vec<Event> = vec![
            BenchmarkStarted {
                evaluation_id: eval.clone(),
                agent: Some("a".into()),
                version: Some(version.clone()),
                suite: "s".into(),
                stage: 1,
                split: "train".into(),
                tasks: trajectories as u32,
            }
            .into(),
        ];
        events.extend((0..trajectories).map(|i| trajectory(round, i)));
        events.push(
            BenchmarkCompleted {
                evaluation_id: eval.clone(),
                score: Some(round as f64 / 10.0),
                metrics: BTreeMap::from([("pass_rate".into(), 0.5)]),
                passed_gate: round % 3 != 0,
            }
            .into(),
        );
        store
            .append(StreamType::Evaluation, &eval, events, &in_run)
            .await
            .unwrap();
        agent(AgentCommand::RecordEvaluation(VersionEvaluated {
            agent: "a".into(),
            version: version.clone(),
            suite: "s".into(),
            stage: 1,
            split: "train".into(),
            score: Some(round as f64 / 10.0),
            metrics: BTreeMap::from([("pass_rate".into(), 0.5)]),
            evaluation_id: eval.clone(),
        }))
        .await
        .unwrap();
        let admitted = round % 3 != 0;
        if admitted {
            agent(AgentCommand::Admit {
                version: version.clone(),
                reason: "runs".into(),
            })
            .await
            .unwrap();
            agent(AgentCommand::Activate {
                version: version.clone(),
                reason: "better".into(),
            })
            .await
            .unwrap();
        } else {
            agent(AgentCommand::Reject {
                version: version.clone(),
                reason: "fails".into(),
            })
            .await
            .unwrap();
        }
        if round % 4 == 3 {
            agent(AgentCommand::Rollback {
                to_version: "v0".into(),
                to_event: Some(3),
                reason: "bad".into(),
            })
            .await
            .unwrap();
        }
        let strategy = format!("s-{round}");
        let mut strategy_events: Vec<Event> = vec![
            StrategyStored {
                strategy_id: strategy.clone(),
                agent: "a".into(),
                kind: "mutate:constant".into(),
                diagnosis: "d".into(),
                summary: "s".into(),
            }
            .into(),
            StrategyOutcomeRecorded {
                strategy_id: strategy.clone(),
                success: admitted,
            }
            .into(),
        ];
        if round % 2 == 0 {
            strategy_events.push(
                StrategyPruned {
                    strategy_id: strategy.clone(),
                    reason: "lost".into(),
                }
                .into(),
            );
        }
        store
            .append(StreamType::Strategy, &strategy, strategy_events, &in_run)
            .await
            .unwrap();
        let execution = format!("x-{round}");
        store
            .append(
                StreamType::SandboxExecution,
                &execution,
                vec![
                    SandboxExecutionStarted {
                        execution_id: execution.clone(),
                        command: vec!["python3".into(), "main.py".into()],
                        limits: serde_json::json!({"wall_ms": 1000}),
                    }
                    .into(),
                    SandboxExecutionFinished {
                        execution_id: execution.clone(),
                        status: "ok".into(),
                        exit_code: Some(0),
                        wall_ms: 5,
                        cpu_ms: 4,
                        peak_memory_bytes: None,
                        stdout_blob: None,
                        stderr_blob: None,
                        error: None,
                    }
                    .into(),
                ],
                &m,
            )
            .await
            .unwrap();
        let mut ending: Vec<Event> = vec![
            AttemptFinished {
                run_id: run.clone(),
                attempt_id: attempt.clone(),
                outcome: if admitted { "promoted" } else { "rejected" }.into(),
                child: Some(version.clone()),
                score: Some(round as f64 / 10.0),
                reason: "r".into(),
                proposal_kind: Some("mutate".into()),
            }
            .into(),
            RunInterrupted {
                run_id: run.clone(),
                reason: "ctrl-c".into(),
            }
            .into(),
        ];
        ending.push(if round % 2 == 0 {
            RunCompleted {
                run_id: run.clone(),
                summary: serde_json::json!({"best": version}),
            }
            .into()
        } else {
            RunFailed {
                run_id: run.clone(),
                error: "boom".into(),
            }
            .into()
        });
        store
            .append(StreamType::Run, &run, ending, &in_run)
            .await
            .unwrap();
    }
}

/// Each view as stored: name → key → JSON.
type Stored = BTreeMap<&'static str, BTreeMap<String, String>>;

fn encoded<R: serde::Serialize>(rows: &BTreeMap<String, R>) -> BTreeMap<String, String> {
    rows.iter()
        .map(|(k, v)| (k.clone(), serde_json::to_string(v).unwrap()))
        .collect()
}

/// The plain fold: every event by reference, one after the other. Also
/// checks that handing the events over by value gives the same rows.
fn fold<P: Projection>(events: &[Recorded]) -> BTreeMap<String, String> {
    let mut by_ref = BTreeMap::new();
    let mut by_value = BTreeMap::new();
    for event in events {
        P::apply(&mut by_ref, event);
        P::apply_owned(&mut by_value, event.clone());
    }
    assert_eq!(
        by_ref,
        by_value,
        "{}: apply_owned differs from apply",
        P::NAME
    );
    encoded(&by_ref)
}

fn fold_all(events: &[Recorded]) -> Stored {
    BTreeMap::from([
        (Archive::NAME, fold::<Archive>(events)),
        (RollbackHistory::NAME, fold::<RollbackHistory>(events)),
        (ReplayBuffer::NAME, fold::<ReplayBuffer>(events)),
        (ReasoningBank::NAME, fold::<ReasoningBank>(events)),
        (Runs::NAME, fold::<Runs>(events)),
    ])
}

async fn stored(store: &Store) -> (Stored, BTreeSet<u64>) {
    let mut views = Stored::new();
    let mut checkpoints = BTreeSet::new();
    for name in ALL.iter().copied() {
        let view = store.load_view(name).await.unwrap();
        views.insert(name, view.rows);
        checkpoints.insert(view.checkpoint);
    }
    (views, checkpoints)
}

fn assert_views_equal(got: &Stored, want: &Stored, what: &str) {
    for (name, rows) in want {
        let have = &got[name];
        assert_eq!(have.len(), rows.len(), "{what}: {name} row count");
        for (key, value) in rows {
            assert_eq!(have.get(key), Some(value), "{what}: {name} row {key}");
        }
    }
}

/// Inserts an event that cannot be decoded (a version from the future).
async fn corrupt(url: &StoreUrl) {
    const SQL: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('agent', 'zz', 1, 'AgentRegistered', '7', '{}', '{}')";
    match url {
        StoreUrl::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::query(SQL).execute(&pool).await.unwrap();
            pool.close().await;
        }
        StoreUrl::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(SQL).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

/// Claims to be insert-only, but keys each event before the one before.
#[derive(Debug)]
struct Descending;

impl Projection for Descending {
    const NAME: &'static str = "test_descending";
    type Row = u64;
    const INSERT_ONLY: bool = true;

    fn apply(rows: &mut BTreeMap<String, u64>, event: &Recorded) {
        rows.insert(
            format!("{:016}", u64::MAX / 2 - event.position),
            event.position,
        );
    }
}

async fn scenario(url: StoreUrl) {
    let store = Store::open(&url).await.unwrap();
    // Over two pages of the projector's reads (5,000 events), most of it after
    // a checkpoint, so that catch-up also folds more than a page.
    history(&store, 0, 4, 390).await;
    catch_up_all(&store).await.unwrap();
    let early = store.head().await.unwrap();
    history(&store, 4, 28, 390).await;
    let head = store.head().await.unwrap();
    assert!(head - early > 10_000, "{early} {head}");

    let events = store.read_all(None).await.unwrap();
    let types: BTreeSet<&str> = events.iter().map(|e| e.event.event_type()).collect();
    assert_eq!(types, Event::TYPES.iter().copied().collect::<BTreeSet<_>>());
    let want = fold_all(&events);
    assert!(want[ReplayBuffer::NAME].len() > 12_000);

    // Incremental catch-up from the middle.
    catch_up_all(&store).await.unwrap();
    let (views, checkpoints) = stored(&store).await;
    assert_views_equal(&views, &want, "catch_up_all");
    assert_eq!(checkpoints, BTreeSet::from([head]));
    assert!(check_all(&store).await.unwrap().is_empty());

    // A rebuild replaces every view with the same rows, byte for byte.
    let done = rebuild_all(&store).await.unwrap();
    assert_eq!(
        done.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        ALL,
        "reported in ALL order"
    );
    assert!(done.iter().all(|(_, to)| *to == head));
    let (views, checkpoints) = stored(&store).await;
    assert_views_equal(&views, &want, "rebuild_all");
    assert_eq!(checkpoints, BTreeSet::from([head]));
    assert!(check_all(&store).await.unwrap().is_empty());

    // One view alone, through the same paths.
    store.clear_view(ReplayBuffer::NAME).await.unwrap();
    assert_eq!(rebuild::<ReplayBuffer>(&store).await.unwrap(), head);
    assert_views_equal(&stored(&store).await.0, &want, "rebuild");
    store.clear_view(Archive::NAME).await.unwrap();
    let archive = catch_up::<Archive>(&store).await.unwrap();
    assert_eq!(encoded(&archive), want[Archive::NAME]);

    // As of a position inside the second page.
    let position = 10_001;
    let upto = &events[..events.iter().take_while(|e| e.position <= position).count()];
    assert_eq!(
        encoded(&as_of::<ReplayBuffer>(&store, position).await.unwrap()),
        fold::<ReplayBuffer>(upto)
    );
    assert_eq!(
        encoded(&as_of::<Runs>(&store, position).await.unwrap()),
        fold::<Runs>(upto)
    );

    // A projection that says it is insert-only but is not: the rebuild
    // notices between pages and stores nothing.
    let err = rebuild::<Descending>(&store).await.unwrap_err().to_string();
    assert!(err.contains("is not insert-only"), "{err}");
    assert_eq!(
        store.load_view(Descending::NAME).await.unwrap(),
        Default::default()
    );

    // An event that cannot be read, after more than a page: every bulk
    // path says where, and no view is replaced or moved.
    corrupt(&url).await;
    let bad = head + 1;
    for err in [
        rebuild_all(&store).await.unwrap_err().to_string(),
        catch_up_all(&store).await.unwrap_err().to_string(),
        as_of::<Runs>(&store, bad).await.unwrap_err().to_string(),
        check_all(&store).await.unwrap_err().to_string(),
    ] {
        assert!(
            err.contains(&format!("position {bad}")) && err.contains("upgrade dgm"),
            "{err}"
        );
    }
    let (views, checkpoints) = stored(&store).await;
    assert_views_equal(&views, &want, "after failed rebuilds");
    assert_eq!(checkpoints, BTreeSet::from([head]));
    // Up to the event before it, the log still reads.
    let runs = as_of::<Runs>(&store, head).await.unwrap();
    assert_eq!(encoded(&runs), want[Runs::NAME]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_paths_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    scenario(sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_paths_on_postgres() {
    let Some(url) = fresh_postgres_url("bulk_paths_on_postgres").await else {
        return;
    };
    scenario(StoreUrl::Postgres(url)).await;
}

/// The bulk paths from a runtime with a single thread (as `#[tokio::test]`
/// and small tools have): the worker threads never block it.
#[tokio::test]
async fn bulk_paths_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&sqlite_url(dir.path())).await.unwrap();
    history(&store, 0, 26, 400).await;
    let events = store.read_all(None).await.unwrap();
    let want = fold_all(&events);
    rebuild_all(&store).await.unwrap();
    assert_views_equal(&stored(&store).await.0, &want, "rebuild_all");
    assert!(check_all(&store).await.unwrap().is_empty());
}
