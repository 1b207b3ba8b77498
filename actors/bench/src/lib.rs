//! The benchmark runner: how dgm judges a version.
//!
//! A [`Suite`] (tasks with tags and splits, evaluation stages with gates, a
//! trusted check) is loaded from a directory by [`load_suite`], which detects
//! the kind: a `suite.toml` task suite, unit tests (pytest / `cargo test`), a
//! performance workload, an OpenEvolve directory (`evaluator.py`), or a
//! dataset (Exercism / Aider Polyglot, HumanEval JSONL, SWE-bench JSONL).
//!
//! [`run_stage`] runs one version ([`RunSpec`]) on one stage of a suite
//! through any sandbox [`dgm_sandbox::Executor`], tasks in parallel, and
//! returns a [`StageReport`]: deterministic metrics plus one [`Trajectory`]
//! per task. [`run_stages`] chains stages and stops at a failed gate.
//! Scores come only from the trusted check, never from the agent.
//!
//! The engine has no actix dependency; the benchmark actor is a thin shell.

pub mod check;
pub mod datasets;
pub mod direct;
pub mod junit;
pub mod openevolve;
pub mod report;
pub mod runner;
pub mod suite;

pub use report::{
    ErrorCategory, Outcome, Perf, RunReport, StageReport, TestCaseResult, Trajectory, render_table,
};
pub use runner::{
    Progress, RunError, RunOptions, RunSpec, run_stage, run_stage_cached, run_stages,
};
pub use suite::{
    Check, Gate, Split, Stage, Suite, SuiteError, SuiteKind, Task, TaskInput, TaskLimits,
    load_suite,
};
