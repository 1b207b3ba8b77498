//! The runner on small synthetic task suites: hostile or broken scorers,
//! hanging and crashing agents, labels (precision / recall), tokens, and the
//! one-line errors of malformed suites.

mod common;

use std::time::Duration;

use common::*;
use dgm_bench::direct::DirectExecutor;
use dgm_bench::{ErrorCategory, Outcome, Split, Stage, load_suite, run_stage};

/// The scorer prints, verbatim, the `print` of the task's expected data, or
/// scores the agent's answer against `answer`.
const SCORER: &str = r#"
import json, os, sys
exp = json.load(open(os.environ["DGM_TASK_EXPECTED"])) if "DGM_TASK_EXPECTED" in os.environ else {}
out = open(os.environ["DGM_AGENT_OUTPUT"]).read().strip()
assert sys.stdin.read().strip() == out
if "print" in exp:
    print("some debug line")
    print(exp["print"])
    sys.exit(0)
if exp.get("crash"):
    sys.exit(3)
if exp.get("hang"):
    import time; time.sleep(30)
ok = out == exp.get("answer")
res = {"score": 1.0 if ok else 0.25, "passed": ok, "reason": None if ok else "expected %r, got %r" % (exp.get("answer"), out), "latency_ms": 7}
if "label" in exp:
    res["prediction"] = out == "yes"
print(json.dumps(res))
"#;

/// The agent: does what the task input says.
const AGENT: &str = r#"
import json, os, sys, time
t = json.load(open(os.environ["DGM_TASK_INPUT"]))
if t.get("sleep"): time.sleep(t["sleep"])
if t.get("exit"): sys.exit(t["exit"])
if t.get("tokens"): print(json.dumps({"tokens": t["tokens"]}), file=sys.stderr)
print(t.get("say", ""))
"#;

fn suite_dir(tasks: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "scorer.py", SCORER);
    write(
        d.path(),
        "suite.toml",
        &format!(
            "[suite]\nname = \"synthetic\"\n[scorer]\ncommand = [\"python3\", \"scorer.py\"]\ntimeout_secs = 3\n\
             [limits]\ntimeout_secs = 5\n{tasks}"
        ),
    );
    d
}

fn agent_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "agent.py", AGENT);
    d
}

async fn run(suite: &std::path::Path, parallelism: usize) -> dgm_bench::StageReport {
    let suite = load_suite(suite).unwrap();
    let a = agent_dir();
    run_stage(
        &suite,
        &Stage::all(),
        Split::Train,
        &agent(a.path(), &["python3", "agent.py"]),
        &DirectExecutor,
        &opts(parallelism),
        &quiet,
    )
    .await
    .unwrap()
}

fn task(id: &str, input: &str, expected: &str) -> String {
    format!("[[tasks]]\nid = \"{id}\"\ntags = [\"t\"]\ninput = {input}\nexpected = {expected}\n")
}

#[tokio::test]
async fn garbage_nan_and_out_of_range_scores_are_failures_with_reasons() {
    let cases = [
        ("garbage", "'this is not json'", "garbage"),
        ("nan", "'{\"score\": NaN}'", "non-finite"),
        (
            "inf",
            "'{\"score\": Infinity, \"passed\": true}'",
            "non-finite",
        ),
        ("big", "'{\"score\": 1.5}'", "outside 0..1"),
        (
            "negative",
            "'{\"score\": -0.1, \"passed\": true}'",
            "outside 0..1",
        ),
        ("string", "'{\"score\": \"0.9\"}'", "must be a number"),
        ("strnan", "'{\"score\": \"nan\"}'", "must be a number"),
        ("array", "'[0.5]'", "not an object"),
        ("empty", "'{}'", "neither"),
        ("passed_str", "'{\"passed\": \"yes\"}'", "true or false"),
        ("huge", "'{\"score\": 1e999}'", "garbage"),
    ];
    let mut tasks = String::new();
    for (id, print, _) in &cases {
        tasks += &task(id, "{ say = \"x\" }", &format!("{{ print = {print} }}"));
    }
    tasks += &task("crash", "{ say = \"x\" }", "{ crash = true }");
    tasks += &task("hang", "{ say = \"x\" }", "{ hang = true }");
    let d = suite_dir(&tasks);
    let r = run(d.path(), 4).await;
    assert_eq!(r.passed, 0);
    for (id, _, why) in &cases {
        let t = r.trajectories.iter().find(|t| t.task_id == *id).unwrap();
        assert_eq!(t.outcome, Outcome::Failure, "{id}");
        assert_eq!(
            t.error_category,
            Some(ErrorCategory::InvalidScore),
            "{id}: {:?}",
            t.rationale
        );
        assert_eq!(t.score, 0.0, "{id}");
        let reason = t.rationale.as_deref().unwrap();
        assert!(reason.contains(why), "{id}: {reason}");
    }
    let crash = r
        .trajectories
        .iter()
        .find(|t| t.task_id == "crash")
        .unwrap();
    assert_eq!(crash.error_category, Some(ErrorCategory::ScorerError));
    assert!(
        crash.rationale.as_deref().unwrap().contains("exit"),
        "{:?}",
        crash.rationale
    );
    let hang = r.trajectories.iter().find(|t| t.task_id == "hang").unwrap();
    assert_eq!(hang.error_category, Some(ErrorCategory::ScorerError));
    assert!(hang.rationale.as_deref().unwrap().contains("timed out"));
    assert_eq!(r.errors["invalid_score"], cases.len());
}

#[tokio::test]
async fn hanging_agent_is_killed_and_recorded_as_timeout() {
    let d = suite_dir(&format!(
        "{}timeout_secs = 1\n{}",
        task("sleepy", "{ sleep = 60 }", "{ answer = \"x\" }"),
        task("fine", "{ say = \"x\" }", "{ answer = \"x\" }"),
    ));
    let started = std::time::Instant::now();
    let r = run(d.path(), 2).await;
    assert!(started.elapsed() < Duration::from_secs(20));
    let t = &r.trajectories[0];
    assert_eq!(t.task_id, "sleepy");
    assert_eq!(t.error_category, Some(ErrorCategory::Timeout));
    assert!(t.rationale.as_deref().unwrap().contains("1.0s"));
    assert!(t.wall_ms < 10_000.0);
    assert!(r.trajectories[1].passed());
    assert_eq!(r.pass_rate, 0.5);
}

#[tokio::test]
async fn crashes_syntax_errors_wrong_answers_labels_and_tokens() {
    let mut tasks = String::new();
    tasks += &task(
        "ok",
        "{ say = \"yes\", tokens = 120 }",
        "{ answer = \"yes\", label = true }",
    );
    tasks += &task(
        "wrong",
        "{ say = \"yes\", tokens = 30 }",
        "{ answer = \"no\", label = false }",
    );
    tasks += &task(
        "miss",
        "{ say = \"no\" }",
        "{ answer = \"yes\", label = true }",
    );
    tasks += &task("crash", "{ exit = 2 }", "{ answer = \"x\" }");
    tasks = tasks.replace(
        "answer = \"yes\", label = true }",
        "answer = \"yes\", label = true }\nlabel = true",
    );
    tasks = tasks.replace(
        "answer = \"no\", label = false }",
        "answer = \"no\", label = false }\nlabel = false",
    );
    let d = suite_dir(&tasks);
    let r = run(d.path(), 3).await;
    let by = |id: &str| r.trajectories.iter().find(|t| t.task_id == id).unwrap();
    assert!(by("ok").passed());
    assert_eq!(by("ok").tokens, Some(120));
    assert_eq!(by("ok").metrics["latency_ms"], 7.0);
    assert_eq!(by("wrong").error_category, Some(ErrorCategory::WrongAnswer));
    assert_eq!(by("wrong").score, 0.25);
    assert!(
        by("wrong")
            .rationale
            .as_deref()
            .unwrap()
            .contains("expected 'no'")
    );
    assert_eq!(by("crash").error_category, Some(ErrorCategory::Crash));
    assert!(by("crash").rationale.as_deref().unwrap().contains("code 2"));
    assert_eq!(r.perf.tokens, Some(150));
    // Labelled: ok (pred yes, label yes) TP; wrong (pred yes, label no) FP; miss (pred no, label yes) FN.
    assert_eq!(r.precision, Some(0.5));
    assert_eq!(r.recall, Some(0.5));
    assert!((r.accuracy - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(r.tag_success_rates["t"], 0.25);
    assert!((r.score - (1.0 + 0.25 + 0.25) / 4.0).abs() < 1e-12);
    let table = dgm_bench::render_table(&r);
    assert!(
        table.contains("t_success_rate") && table.contains("precision") && table.contains("crash")
    );

    // A Python syntax error in the agent.
    let bad = tempfile::tempdir().unwrap();
    write(bad.path(), "agent.py", "def broken(:\n");
    let suite = load_suite(d.path()).unwrap();
    let r = run_stage(
        &suite,
        &Stage::all(),
        Split::Train,
        &agent(bad.path(), &["python3", "agent.py"]),
        &DirectExecutor,
        &opts(2),
        &quiet,
    )
    .await
    .unwrap();
    assert!(
        r.trajectories
            .iter()
            .all(|t| t.error_category == Some(ErrorCategory::SyntaxError))
    );
    assert!(r.trajectories[0].log_excerpt.contains("SyntaxError"));
}

#[tokio::test]
async fn parallel_and_serial_give_identical_metrics() {
    let mut tasks = String::new();
    for i in 0..8 {
        let say = if i % 3 == 0 { "no" } else { "yes" };
        tasks += &task(
            &format!("t{i}"),
            &format!("{{ say = \"{say}\" }}"),
            "{ answer = \"yes\" }",
        );
        tasks += &format!("tags = [\"t\", \"g{}\"]\n", i % 2);
        tasks = tasks.replacen("tags = [\"t\"]\n", "", 1);
    }
    let d = suite_dir(&tasks);
    let a = run(d.path(), 1).await;
    let b = run(d.path(), 8).await;
    assert_eq!(a.metrics(), b.metrics());
    assert!(a.metrics().contains_key("g0_success_rate"));
    let ids: Vec<_> = b.trajectories.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, (0..8).map(|i| format!("t{i}")).collect::<Vec<_>>());
}

fn load_err(toml: &str) -> String {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "suite.toml", toml);
    write(d.path(), "in.json", "{}");
    let e = load_suite(d.path()).unwrap_err().to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    assert!(e.contains("suite.toml"), "names the file: {e}");
    e
}

#[test]
fn malformed_suites_give_one_line_errors_naming_file_and_field() {
    let head = "[suite]\nname = \"x\"\n[scorer]\ncommand = [\"true\"]\n";
    let e = load_err(&format!(
        "{head}[[tasks]]\nid = \"a\"\nsplit = \"training\"\n"
    ));
    assert!(
        e.contains("tasks[0].split") && e.contains("training"),
        "{e}"
    );
    let e = load_err(&format!(
        "{head}[[tasks]]\nid = \"a\"\ninput_file = \"nope.json\"\n"
    ));
    assert!(
        e.contains("tasks[0].input_file") && e.contains("does not exist"),
        "{e}"
    );
    let e = load_err(&format!("{head}[[tasks]]\nid = \"a\"\nbogus = 1\n"));
    assert!(e.contains("bogus"), "{e}");
    let e = load_err(&format!("{head}[[tasks]]\ntags = []\n"));
    assert!(e.contains("missing field `id`"), "{e}");
    let e = load_err("[suite]\nname = \"x\"\n[[tasks]]\nid = \"a\"\n");
    assert!(e.contains("scorer.command"), "{e}");
    let e = load_err(&format!(
        "{head}[[tasks]]\nid = \"a\"\n[[tasks]]\nid = \"a\"\n"
    ));
    assert!(e.contains("duplicate task id"), "{e}");
    let e = load_err(&format!(
        "{head}[[stages]]\nname = \"s\"\nmin_score = 2\n[[tasks]]\nid = \"a\"\n"
    ));
    assert!(e.contains("stages[0].min_score"), "{e}");
    let e = load_err("[suite]\nname = \"x\"\nkind = \"quiz\"\n");
    assert!(e.contains("suite.kind"), "{e}");
    let e = load_err(&format!(
        "{head}[limits]\ntimeout_secs = -1\n[[tasks]]\nid = \"a\"\n"
    ));
    assert!(e.contains("limits.timeout_secs"), "{e}");
    let e = load_err("[suite\nname = 1");
    assert!(e.contains("line 1"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    assert!(
        load_suite(empty.path())
            .unwrap_err()
            .to_string()
            .contains("not a suite")
    );
}
