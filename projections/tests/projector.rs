//! The projector on both back ends: incremental catch-up equals a rebuild,
//! as-of equals what was live at that position, concurrent catch-ups agree.

use std::sync::Arc;

use dgm_events::testing::{fresh_postgres_url, sqlite_url};
use dgm_events::*;
use dgm_projections::projector::{as_of, catch_up, catch_up_all, rebuild_all};
use dgm_projections::*;

mod common;
use common::{created, manifest};

fn trajectory(version: &str, task: &str, ok: bool) -> Event {
    TrajectoryRecorded {
        evaluation_id: format!("e-{version}"),
        trajectory: Trajectory {
            agent: "a".into(),
            version: version.into(),
            suite: "s".into(),
            task: task.into(),
            tags: vec!["t".into()],
            outcome: if ok { "success" } else { "failure" }.into(),
            score: Some(if ok { 1.0 } else { 0.0 }),
            error_category: (!ok).then(|| "timeout".into()),
            rationale: None,
            // What COPY's text format and JSON must both escape.
            log_excerpt: "line\tone\nline \\two\\ \"quoted\"\r".into(),
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

/// Writes a small history, catching up after each step; returns the
/// position and live archive after the first promotion.
async fn history(store: &Store) -> (u64, Rows) {
    let m = Metadata::new("test");
    let agent = |command| store.agent("a", command, &m);
    agent(AgentCommand::Register {
        manifest: manifest("a"),
        source: None,
        seed: created("a", "v0", None),
    })
    .await
    .unwrap();
    catch_up_all(store).await.unwrap();
    agent(AgentCommand::CreateVersion(created("a", "v1", Some("v0"))))
        .await
        .unwrap();
    let eval = |v: &str| -> Vec<Event> {
        vec![
            BenchmarkStarted {
                evaluation_id: format!("e-{v}"),
                agent: Some("a".into()),
                version: Some(v.into()),
                suite: "s".into(),
                stage: 1,
                split: "train".into(),
                tasks: 2,
            }
            .into(),
            trajectory(v, "t1", true),
            trajectory(v, "t2", v != "v1"),
            BenchmarkCompleted {
                evaluation_id: format!("e-{v}"),
                score: Some(0.5),
                metrics: Default::default(),
                passed_gate: true,
            }
            .into(),
        ]
    };
    store
        .append(StreamType::Evaluation, "e-v1", eval("v1"), &m)
        .await
        .unwrap();
    agent(AgentCommand::RecordEvaluation(VersionEvaluated {
        agent: "a".into(),
        version: "v1".into(),
        suite: "s".into(),
        stage: 1,
        split: "train".into(),
        score: Some(0.5),
        metrics: Default::default(),
        evaluation_id: "e-v1".into(),
    }))
    .await
    .unwrap();
    agent(AgentCommand::Admit {
        version: "v1".into(),
        reason: "ok".into(),
    })
    .await
    .unwrap();
    agent(AgentCommand::Activate {
        version: "v1".into(),
        reason: "better".into(),
    })
    .await
    .unwrap();
    catch_up_all(store).await.unwrap();
    let mid = store.head().await.unwrap();
    let live_mid = catch_up::<Archive>(store).await.unwrap();
    agent(AgentCommand::CreateVersion(created("a", "v2", Some("v1"))))
        .await
        .unwrap();
    agent(AgentCommand::Reject {
        version: "v2".into(),
        reason: "fails".into(),
    })
    .await
    .unwrap();
    agent(AgentCommand::Rollback {
        to_version: "v0".into(),
        to_event: None,
        reason: "r".into(),
    })
    .await
    .unwrap();
    store
        .append(
            StreamType::Strategy,
            "s1",
            vec![
                StrategyStored {
                    strategy_id: "s1".into(),
                    agent: "a".into(),
                    kind: "mutate:constant".into(),
                    diagnosis: "d".into(),
                    summary: "s".into(),
                }
                .into(),
            ],
            &m,
        )
        .await
        .unwrap();
    for win in [true, false, false] {
        store
            .append(
                StreamType::Strategy,
                "s1",
                vec![
                    StrategyOutcomeRecorded {
                        strategy_id: "s1".into(),
                        success: win,
                    }
                    .into(),
                ],
                &m,
            )
            .await
            .unwrap();
    }
    store
        .append(
            StreamType::Run,
            "r1",
            vec![
                RunStarted {
                    run_id: "r1".into(),
                    agent: "a".into(),
                    suite: "s".into(),
                    config: serde_json::json!({"seed": 1}),
                }
                .into(),
            ],
            &m.clone().with_run("r1"),
        )
        .await
        .unwrap();
    (mid, live_mid)
}

type Rows = std::collections::BTreeMap<String, AgentArchive>;

async fn scenario(store: Arc<Store>) {
    let (mid, live_mid) = history(&store).await;
    // as-of equals what was live then
    assert_eq!(as_of::<Archive>(&store, mid).await.unwrap(), live_mid);
    // incremental equals rebuilt, and check agrees
    catch_up_all(&store).await.unwrap();
    assert!(dgm_projections::check_all(&store).await.unwrap().is_empty());
    let archive = catch_up::<Archive>(&store).await.unwrap();
    let bank = catch_up::<ReasoningBank>(&store).await.unwrap();
    let buffer = catch_up::<ReplayBuffer>(&store).await.unwrap();
    let history = catch_up::<RollbackHistory>(&store).await.unwrap();
    rebuild_all(&store).await.unwrap();
    assert_eq!(catch_up::<Archive>(&store).await.unwrap(), archive);
    assert_eq!(catch_up::<ReasoningBank>(&store).await.unwrap(), bank);
    assert_eq!(catch_up::<ReplayBuffer>(&store).await.unwrap(), buffer);
    // the read models say what happened
    let a = &archive["a"];
    assert_eq!(a.active.as_deref(), Some("v0"));
    assert_eq!(a.versions["v0"].children, 1);
    assert_eq!(a.versions["v1"].admitted, Some(true));
    assert!(a.versions["v1"].rolled_back);
    assert_eq!(a.versions["v2"].admitted, Some(false));
    assert_eq!(a.versions["v1"].scores["s/1/train"], 0.5);
    let s = &bank["s1"];
    assert_eq!((s.uses, s.wins), (3, 1));
    assert!((s.win_rate - 1.0 / 3.0).abs() < 1e-12);
    let kinds: Vec<&str> = history["a"].iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["seed", "promotion", "rollback"]);
    let failures: Vec<_> = buffer
        .values()
        .filter(|r| {
            TrajectoryFilter {
                outcome: Some("failure".into()),
                error_category: Some("timeout".into()),
                tag: Some("t".into()),
                ..Default::default()
            }
            .matches(r)
        })
        .collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].trajectory.version, "v1");
    assert_eq!(
        catch_up::<Runs>(&store).await.unwrap()["r1"].status,
        "running"
    );
    // concurrent catch-ups from scratch agree with a single one
    rebuild_all(&store).await.unwrap();
    store.clear_view(Archive::NAME).await.unwrap();
    let (x, y) = tokio::join!(catch_up::<Archive>(&store), catch_up::<Archive>(&store));
    assert_eq!(x.unwrap(), archive);
    assert_eq!(y.unwrap(), archive);
    assert!(dgm_projections::check_all(&store).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projector_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    scenario(Arc::new(
        Store::open(&sqlite_url(dir.path())).await.unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projector_on_postgres() {
    let Some(url) = fresh_postgres_url("projector_on_postgres").await else {
        return;
    };
    scenario(Arc::new(
        Store::open(&StoreUrl::Postgres(url)).await.unwrap(),
    ))
    .await;
}
