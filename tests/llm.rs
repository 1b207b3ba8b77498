//! End-to-end tests of the `llm` and `self` proposers through the real `dgm`
//! binary, the native sandbox and real Python, against a mock
//! OpenAI-compatible server on 127.0.0.1 started by each test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dgm_llm::mock::{MockReply, MockRequest, MockServer};
use serde_json::{Value, json};

const KEY: &str = "sk-e2e-NEVER-LOG-ME-9f8e7d6c5b4a";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

struct Dgm {
    dir: tempfile::TempDir,
    store: String,
    base_url: String,
}

impl Dgm {
    fn new(server: &MockServer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = format!("sqlite://{}", dir.path().join("dgm.db").display());
        Self {
            dir,
            store,
            base_url: server.base_url(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> Out {
        let out_path = self.path().join("last.out");
        let err_path = self.path().join("last.err");
        let mut child = Command::new(env!("CARGO_BIN_EXE_dgm"))
            .args(args)
            .env("DGM_STORE", &self.store)
            .env("OPENAI_BASE_URL", &self.base_url)
            .env("OPENAI_API_KEY", KEY)
            .env("DGM_LOG", "info")
            .env_remove("DGM_LLM_MODELS")
            .current_dir(self.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .expect("dgm starts");
        let began = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if began.elapsed() > Duration::from_secs(300) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "dgm {args:?} still running after 300 s:\n{}",
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Out {
            code: status.code().unwrap_or(-1),
            stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        }
    }

    fn ok(&self, args: &[&str]) -> Out {
        let out = self.run(args);
        assert_eq!(out.code, 0, "dgm {args:?} failed:\n{}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout))
    }

    fn history(&self) -> Vec<Value> {
        self.json(&["history"]).as_array().unwrap().clone()
    }

    /// Every byte of the store (database, WAL, shared memory) as text.
    fn store_bytes(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.path()).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name().to_string_lossy().starts_with("dgm.db") {
                all.push_str(&String::from_utf8_lossy(
                    &std::fs::read(entry.path()).unwrap(),
                ));
            }
        }
        all
    }

    fn assert_no_key(&self, outputs: &[&Out]) {
        let store = self.store_bytes();
        assert!(store.len() > 10_000, "the store was read");
        assert!(!store.contains(KEY), "the API key is in the store");
        assert!(
            !store.contains("NEVER-LOG-ME"),
            "part of the API key is in the store"
        );
        for out in outputs {
            assert!(
                !out.stderr.contains(KEY) && !out.stdout.contains(KEY),
                "the API key was printed"
            );
        }
        let text = self.ok(&["history"]);
        assert!(!text.stdout.contains(KEY));
    }
}

fn event_type(e: &Value) -> &str {
    e["event_type"].as_str().unwrap_or_default()
}

fn payload(e: &Value) -> &Value {
    &e["payload"][event_type(e)]
}

fn events<'a>(history: &'a [Value], kind: &'a str) -> Vec<&'a Value> {
    history
        .iter()
        .filter(|e| event_type(e) == kind)
        .map(payload)
        .collect()
}

const BEST_FIT: &str = "Best Fit: put the item where it leaves the least room.\n\npriority.py\n<<<<<<< SEARCH\n        score = 1.0\n=======\n        score = -(b - item)\n>>>>>>> REPLACE\n";

const ANALYSIS: &str = r#"{"summary": "First Fit ignores how full a bin is", "possible_improvements": ["Best Fit", "penalise near-empty bins"], "chosen_proposal": "Best Fit", "implementation_suggestion": "score each bin by -(b - item)", "problem_statement": "Make priority prefer the bin the item fills most."}"#;

/// The first call is rate limited; diagnosis prompts get the analysis, proposal prompts Best Fit.
fn binpack_mock() -> MockServer {
    MockServer::start(|req: &MockRequest, n| {
        if n == 0 {
            MockReply::error(429, "rate limited, retry")
        } else if req.text().contains("problem_statement") {
            MockReply::chat_with_usage(ANALYSIS, 1_000, 200)
        } else {
            MockReply::chat_with_usage(BEST_FIT, 2_000, 100)
        }
    })
    .unwrap()
}

fn binpack() -> String {
    repo().join("examples/binpack").display().to_string()
}

#[test]
fn llm_proposer_promotes_best_fit_on_binpack_and_never_stores_the_key() {
    let server = binpack_mock();
    let dgm = Dgm::new(&server);
    let out = dgm.ok(&[
        "evolve",
        &binpack(),
        "--proposer",
        "llm",
        "--model",
        "mock-model@1/2",
        "--generations",
        "1",
        "--population",
        "1",
        "--parallelism",
        "2",
        "--llm-backoff",
        "10ms",
        "--json",
    ]);
    let summaries: Value = serde_json::from_str(&out.stdout).unwrap();
    let s = &summaries[0];
    assert_eq!(s["promoted"], 1, "{s:#}\n{}", out.stderr);
    assert!(s["gain"].as_f64().unwrap() > 0.0, "{s:#}");
    let history = dgm.history();

    // The child is Best Fit, proposed by the model.
    let created = events(&history, "VersionCreated");
    let child = created.last().unwrap();
    assert!(
        child["patch"]
            .as_str()
            .unwrap()
            .contains("+        score = -(b - item)"),
        "{child:#}"
    );
    assert!(
        child["summary"]
            .as_str()
            .unwrap()
            .starts_with("llm:search_replace: mock-model: Best Fit"),
        "{child:#}"
    );
    let finished = events(&history, "AttemptFinished");
    assert_eq!(finished[0]["outcome"], "promoted", "{:#}", finished[0]);

    // The model's diagnosis is recorded with the attempt's diagnosis.
    let diagnosis = events(&history, "DiagnosisMade");
    assert_eq!(diagnosis[0]["analysis"]["chosen_proposal"], "Best Fit");
    assert_eq!(diagnosis[0]["analysis"]["model"], "mock-model");

    // Every call is logged with model, tokens, latency, cost and outcome.
    let calls = events(&history, "LlmCallMade");
    let summary: Vec<(String, String)> = calls
        .iter()
        .map(|c| {
            (
                c["purpose"].as_str().unwrap().into(),
                c["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("diagnose".to_string(), "http_429".to_string()),
            ("diagnose".into(), "ok".into()),
            ("propose".into(), "ok".into())
        ]
    );
    let cost: f64 = calls.iter().map(|c| c["cost_usd"].as_f64().unwrap()).sum();
    let expected = (1_000.0 + 200.0 * 2.0 + 2_000.0 + 100.0 * 2.0) / 1e6;
    assert!((cost - expected).abs() < 1e-12, "cost {cost} != {expected}");
    assert!(calls.iter().all(|c| c["model"] == "mock-model"));
    let with_meta: Vec<&Value> = history
        .iter()
        .filter(|e| event_type(e) == "LlmCallMade")
        .collect();
    assert!(
        with_meta
            .iter()
            .all(|e| e["metadata"]["attempt_id"].is_string()),
        "calls carry the attempt"
    );

    // The prompt held the parent's code and the diagnosis.
    let requests = server.requests();
    let propose = requests
        .iter()
        .find(|r| !r.text().contains("problem_statement"))
        .unwrap();
    assert!(
        propose
            .text()
            .contains("def priority(item: float, bins: list[float])")
    );
    assert!(
        propose
            .text()
            .contains("Make priority prefer the bin the item fills most.")
    );
    assert_eq!(
        propose.authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );

    dgm.assert_no_key(&[&out]);
}

#[test]
fn a_spent_token_budget_stops_the_run_cleanly() {
    let server = binpack_mock();
    let dgm = Dgm::new(&server);
    let out = dgm.ok(&[
        "evolve",
        &binpack(),
        "--proposer",
        "llm",
        "--model",
        "mock-model",
        "--generations",
        "5",
        "--population",
        "1",
        "--parallelism",
        "2",
        "--llm-backoff",
        "10ms",
        "--max-tokens",
        "1000",
        "--json",
    ]);
    let summaries: Value = serde_json::from_str(&out.stdout).unwrap();
    let s = &summaries[0];
    let reason = s["stop_reason"].as_str().unwrap();
    assert!(reason.contains("LLM token budget spent"), "{s:#}");
    assert_eq!(s["attempts"], 1, "{s:#}");
    let history = dgm.history();
    assert_eq!(
        events(&history, "RunCompleted").len(),
        1,
        "a clean stop, not a failure"
    );
    // The diagnosis (1,200 tokens) spent the budget: the proposal made no request.
    let calls = events(&history, "LlmCallMade");
    assert_eq!(calls.last().unwrap()["outcome"], "budget", "{calls:#?}");
    let finished = events(&history, "AttemptFinished");
    assert!(
        finished[0]["reason"].as_str().unwrap().contains("budget"),
        "{:#}",
        finished[0]
    );
    assert_eq!(server.requests().len(), 2, "429 + the diagnosis");
    dgm.assert_no_key(&[&out]);
}

/// A HumanEval-format suite the coding agent is evaluated on (outside its code).
fn humaneval_suite(dir: &Path) -> PathBuf {
    let tasks = [
        (
            "add",
            "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n",
            "def check(f):\n    assert f(2, 3) == 5\n",
        ),
        (
            "neg",
            "def neg(a):\n    \"\"\"Return -a.\"\"\"\n",
            "def check(f):\n    assert f(2) == -2\n",
        ),
        (
            "sq",
            "def sq(a):\n    \"\"\"Return a squared.\"\"\"\n",
            "def check(f):\n    assert f(3) == 9\n",
        ),
        (
            "inc",
            "def inc(a):\n    \"\"\"Return a + 1.\"\"\"\n",
            "def check(f):\n    assert f(1) == 2\n",
        ),
        (
            "dbl",
            "def dbl(a):\n    \"\"\"Return 2a.\"\"\"\n",
            "def check(f):\n    assert f(2) == 4\n",
        ),
    ];
    let path = dir.join("secret-suite").join("mini_humaneval.jsonl");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let lines: Vec<String> = tasks
        .iter()
        .map(|(name, prompt, test)| {
            json!({"task_id": format!("Mini/{name}"), "prompt": prompt, "test": test, "entry_point": name})
                .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn self_proposer_runs_the_coding_agents_improve_entry_in_the_sandbox() {
    let probe_dir = tempfile::tempdir().unwrap();
    let suite = humaneval_suite(probe_dir.path());
    let suite_dir = suite.parent().unwrap().display().to_string();
    let probe = format!(
        "ls /dgm /dgm/agent; ls {suite_dir} 2>&1; cat /etc/shadow 2>&1 | head -1; echo key-chars=${{#OPENAI_API_KEY}}"
    );
    // The agent's conversation: look around, edit its own prompts, stop.
    let server = MockServer::start(move |req: &MockRequest, _| {
        let tool_results = req.body["messages"]
            .as_array()
            .map(|m| m.iter().filter(|m| m["role"] == "tool").count())
            .unwrap_or(0);
        match tool_results {
            0 => MockReply::tool_calls(&[("call_1", "bash", json!({"command": probe}))]),
            1 => MockReply::tool_calls(&[(
                "call_2",
                "edit",
                json!({"command": "str_replace", "path": "prompts.py",
                       "old_str": "MAX_STEPS = 20", "new_str": "MAX_STEPS = 30"}),
            )]),
            _ => MockReply::chat("Raised the step budget to 30 so long tasks can finish."),
        }
    })
    .unwrap();
    let dgm = Dgm::new(&server);
    let agent = repo().join("examples/coding_agent").display().to_string();
    let suite_arg = suite.display().to_string();
    let out = dgm.ok(&[
        "evolve",
        &agent,
        "--suite",
        &suite_arg,
        "--proposer",
        "self",
        "--model",
        "mock-model",
        "--generations",
        "1",
        "--population",
        "1",
        "--parallelism",
        "2",
        "--json",
    ]);
    let history = dgm.history();
    let created = events(&history, "VersionCreated");
    assert_eq!(
        created.len(),
        2,
        "seed + the self-improved child:\n{}",
        out.stderr
    );
    let child = created[1];
    let patch = child["patch"].as_str().unwrap();
    assert!(
        patch.contains("-MAX_STEPS = 20") && patch.contains("+MAX_STEPS = 30"),
        "{patch}"
    );
    assert!(
        patch.contains("prompts.py") && !patch.contains("solve.py"),
        "{patch}"
    );
    assert!(
        child["summary"]
            .as_str()
            .unwrap()
            .contains("Raised the step budget to 30"),
        "{child:#}"
    );
    assert_eq!(events(&history, "AttemptFinished").len(), 1);

    // What the agent saw inside the sandbox: its code and the input, not the suite.
    let requests = server.requests();
    let seen = requests[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .and_then(|m| m["content"].as_str())
        .unwrap()
        .to_string();
    assert!(
        seen.contains("agent") && seen.contains("input") && seen.contains("improve.py"),
        "{seen}"
    );
    assert!(
        seen.contains("No such file"),
        "the suite is not visible: {seen}"
    );
    assert!(!seen.contains("mini_humaneval"), "{seen}");
    assert!(!seen.contains("root:"), "no /etc/shadow: {seen}");
    dgm.assert_no_key(&[&out]);
}
