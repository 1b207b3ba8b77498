//! The Genesis suite with the rule-based spec agent: per-tag rates, labels,
//! and "passes some but not all".

mod common;

use common::*;
use dgm_bench::direct::DirectExecutor;
use dgm_bench::{Split, Stage, load_suite, run_stage, run_stages};

#[tokio::test]
async fn spec_agent_passes_some_but_not_all_of_genesis() {
    let suite = load_suite(repo().join("benchmarks/genesis")).unwrap();
    let groups = [
        "spec_saas",
        "spec_ecommerce",
        "deployment",
        "security",
        "performance",
    ];
    for g in groups {
        assert!(
            suite.tasks.iter().any(|t| t.tags.iter().any(|x| x == g)),
            "group {g}"
        );
    }
    let spec = agent(
        &repo().join("examples/spec_agent"),
        &["python3", "agent.py"],
    );
    let r = run_stage(
        &suite,
        &Stage::all(),
        Split::Train,
        &spec,
        &DirectExecutor,
        &opts(2),
        &quiet,
    )
    .await
    .unwrap();
    println!("{}", dgm_bench::render_table(&r));
    assert!(
        r.passed > 0 && r.passed < r.tasks,
        "some but not all: {} of {}",
        r.passed,
        r.tasks
    );
    let m = r.metrics();
    for g in groups {
        assert!(m.contains_key(&format!("{g}_success_rate")), "{g}");
    }
    assert_eq!(m["spec_saas_success_rate"], 1.0);
    assert_eq!(m["spec_ecommerce_success_rate"], 0.0);
    assert!(m["security_success_rate"] > 0.0 && m["security_success_rate"] < 1.0);
    // Deployment and security tasks are labelled: precision/recall exist.
    let (p, rc) = (r.precision.unwrap(), r.recall.unwrap());
    assert_eq!(p, 1.0, "the rules never flag a clean task");
    assert!(rc > 0.0 && rc < 1.0);
    let failed = r
        .trajectories
        .iter()
        .find(|t| t.task_id == "sec-path")
        .unwrap();
    assert!(
        failed
            .rationale
            .as_deref()
            .unwrap()
            .contains("expected a problem")
    );

    let staged = run_stages(
        &suite,
        Split::Validation,
        &spec,
        &DirectExecutor,
        &opts(2),
        &quiet,
    )
    .await
    .unwrap();
    assert!(staged.completed);
    assert!(staged.last().unwrap().passed < staged.last().unwrap().tasks);
}
