//! End-to-end tests of the `dgm` binary's log commands, on SQLite and PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::Command;

use dgm_events::testing::fresh_postgres_url;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Dgm {
    store: String,
    cwd: PathBuf,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Dgm {
    fn run(&self, args: &[&str]) -> Out {
        let out = Command::new(env!("CARGO_BIN_EXE_dgm"))
            .args(args)
            .env("DGM_STORE", &self.store)
            .current_dir(&self.cwd)
            .output()
            .expect("dgm runs");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code, 0, "dgm {args:?} failed: {}", out.stderr);
        out.stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).expect("valid JSON")
    }

    /// Fails with exactly one line on stderr, never a panic.
    fn fails(&self, args: &[&str], needle: &str) {
        let out = self.run(args);
        assert_ne!(out.code, 0, "dgm {args:?} should fail");
        let err = out.stderr.trim();
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(needle), "expected {needle:?} in {err}");
    }
}

/// Adds a second version through the library, as an evolution would.
async fn add_child(store: &dgm_events::Store, agent: &str, parent: &str, text: &str) -> String {
    use dgm_events::*;
    let mut files = dgm_events::agent::read_dir_files(&repo().join("examples/binpack")).unwrap();
    files.insert("priority.py".into(), text.as_bytes().to_vec());
    let hash = store.put_tree(&files).await.unwrap();
    let version = hash[..12].to_string();
    store
        .agent(
            agent,
            AgentCommand::CreateVersion(VersionCreated {
                agent: agent.into(),
                version: version.clone(),
                parent: Some(parent.into()),
                tree_hash: hash,
                patch: String::new(),
                origin: Origin::Proposer,
                summary: "test child".into(),
            }),
            &Metadata::new("test"),
        )
        .await
        .unwrap();
    store
        .agent(
            agent,
            AgentCommand::Admit {
                version: version.clone(),
                reason: "test".into(),
            },
            &Metadata::new("test"),
        )
        .await
        .unwrap();
    store
        .agent(
            agent,
            AgentCommand::Activate {
                version: version.clone(),
                reason: "better".into(),
            },
            &Metadata::new("test"),
        )
        .await
        .unwrap();
    version
}

async fn scenario(dgm: Dgm) {
    let binpack = repo().join("examples/binpack");
    let binpack = binpack.to_str().unwrap();
    assert!(dgm.ok(&["init"]).contains("store ready"));
    let added = dgm.json(&["agent", "add", binpack]);
    let seed = added["seed_version"].as_str().unwrap().to_string();
    dgm.fails(&["agent", "add", binpack], "already registered");
    dgm.fails(&["agent", "add", "/nonexistent"], "agent.toml");

    let agents = dgm.json(&["agents"]);
    assert_eq!(agents[0]["agent"], "binpack");
    let archive = dgm.json(&["archive", "binpack"]);
    assert_eq!(archive["active"], seed.as_str());
    assert_eq!(archive["versions"][&seed]["origin"], "seed");
    assert_eq!(archive["versions"][&seed]["admitted"], true);

    let history = dgm.json(&["history"]);
    let positions: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, (1..=positions.len() as u64).collect::<Vec<_>>());
    assert!(history[0]["metadata"]["time"].is_string());
    assert_eq!(history[0]["metadata"]["actor"], "cli");

    // a second version, promoted
    let url: dgm_events::StoreUrl = dgm.store.parse().unwrap();
    let store = dgm_events::Store::open(&url).await.unwrap();
    let before_child = store.head().await.unwrap();
    let child = add_child(
        &store,
        "binpack",
        &seed,
        "def priority(item, bins):\n    return [-(b - item) for b in bins]\n",
    )
    .await;
    assert_eq!(dgm.json(&["archive", "binpack"])["active"], child.as_str());

    // rollback by version, then by event
    let rolled = dgm.json(&[
        "rollback",
        "binpack",
        "--to-version",
        &seed[..6],
        "--reason",
        "regressed",
    ]);
    assert_eq!(rolled["to"], seed.as_str());
    let archive = dgm.json(&["archive", "binpack"]);
    assert_eq!(archive["active"], seed.as_str());
    assert_eq!(archive["versions"][&child]["rolled_back"], true);
    assert_eq!(
        archive["versions"][&child]["admitted"], true,
        "nothing is deleted"
    );
    dgm.fails(
        &["rollback", "binpack", "--to-version", &seed],
        "already the active",
    );
    let head = store.head().await.unwrap();
    let rolled = dgm.json(&["rollback", "binpack", "--to-event", &(head - 1).to_string()]);
    assert_eq!(rolled["to"], child.as_str());
    dgm.fails(
        &["rollback", "binpack", "--to-event", "999999"],
        "does not exist",
    );
    let usage = dgm.run(&["rollback", "binpack"]);
    assert_eq!(usage.code, 2, "a usage error");
    assert!(usage.stderr.contains("--to-version"));

    // as-of: before the child existed
    let then = dgm.json(&["archive", "binpack", "--as-of", &before_child.to_string()]);
    assert_eq!(then["versions"].as_object().unwrap().len(), 1);
    assert_eq!(then["active"], seed.as_str());
    let history = dgm.json(&["history", "--agent", "binpack", "--from", "2", "--to", "4"]);
    assert_eq!(history.as_array().unwrap().len(), 3);

    let text = dgm.ok(&["history"]);
    assert!(text.contains("RolledBack"));
    let text = dgm.ok(&["archive", "binpack"]);
    assert!(
        text.contains("rolled-back") || text.contains("ACTIVE"),
        "{text}"
    );

    // checkout
    let out = dgm.cwd.join("co-active");
    dgm.ok(&[
        "checkout",
        "binpack",
        "active",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read_to_string(out.join("priority.py"))
            .unwrap()
            .contains("-(b - item)")
    );
    let seed_out = dgm.cwd.join("co-seed");
    dgm.ok(&[
        "checkout",
        "binpack",
        &seed,
        "--out",
        seed_out.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(seed_out.join("priority.py")).unwrap(),
        std::fs::read(repo().join("examples/binpack/priority.py")).unwrap()
    );
    dgm.fails(
        &[
            "checkout",
            "binpack",
            "active",
            "--out",
            out.to_str().unwrap(),
        ],
        "not empty",
    );
    dgm.fails(&["checkout", "binpack", "zzzz", "--out", "x"], "no version");
    dgm.fails(&["archive", "nobody"], "not registered");

    // projections: rebuild equals live
    assert_eq!(dgm.run(&["projections", "rebuild", "--check"]).code, 0);
    let rebuilt = dgm.json(&["projections", "rebuild"]);
    assert_eq!(rebuilt.as_array().unwrap().len(), 5);
    assert_eq!(dgm.run(&["projections", "rebuild", "--check"]).code, 0);
    assert!(before_child > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn log_commands_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("dgm.db").display());
    scenario(Dgm {
        store,
        cwd: dir.path().to_path_buf(),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn log_commands_on_postgres() {
    let Some(url) = fresh_postgres_url("log_commands_on_postgres").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    scenario(Dgm {
        store: url,
        cwd: dir.path().to_path_buf(),
    })
    .await;
}

#[test]
fn default_store_is_created_under_cwd() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dgm"))
        .arg("init")
        .env_remove("DGM_STORE")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(dir.path().join(".dgm/dgm.db").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn check_detects_a_tampered_view() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dgm.db");
    let dgm = Dgm {
        store: format!("sqlite://{}", db.display()),
        cwd: dir.path().to_path_buf(),
    };
    dgm.ok(&[
        "agent",
        "add",
        repo().join("examples/binpack").to_str().unwrap(),
    ]);
    dgm.ok(&["agents"]);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE view_rows SET value = replace(value, '\"admitted\":true', '\"admitted\":false') WHERE view = 'archive'")
        .execute(&pool).await.unwrap();
    let out = dgm.run(&["projections", "rebuild", "--check"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("archive: row `binpack` differs"),
        "{}",
        out.stdout
    );
    // a rebuild repairs it
    dgm.ok(&["projections", "rebuild"]);
    assert_eq!(dgm.run(&["projections", "rebuild", "--check"]).code, 0);
    let _ = Path::new("");
}

#[test]
fn corrupt_payload_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dgm.db");
    let dgm = Dgm {
        store: format!("sqlite://{}", db.display()),
        cwd: dir.path().to_path_buf(),
    };
    dgm.ok(&["init"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        sqlx::query("INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('agent','x',1,'AgentRegistered','2','{\"AgentRegistered\": 5}','{}')")
            .execute(&pool).await.unwrap();
    });
    dgm.fails(&["history"], "event at position 1 cannot be read");
    dgm.fails(&["agents"], "position 1");
}
