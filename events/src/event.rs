//! Every event dgm can record, in one list.
//!
//! The `events!` table below is the single place an event type is declared:
//! its name (the stored `event_type`), its current version and its payload.
//! Old stored versions are lifted to the current one by [`crate::upcast`]
//! before they are decoded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::agent::AgentManifest;

/// Declares the payload structs, the [`Event`] enum and its type/version table.
macro_rules! events {
    ($(
        $(#[$doc:meta])*
        $name:ident @ $version:literal {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* $(,)?
        }
    )*) => {
        /// One domain event. Serialized externally tagged: `{"VersionCreated": {...}}`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub enum Event {
            $( $(#[$doc])* $name($name), )*
        }

        $(
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
            pub struct $name { $( $(#[$fmeta])* pub $field: $ty, )* }

            impl From<$name> for Event {
                fn from(e: $name) -> Self { Event::$name(e) }
            }
        )*

        impl Event {
            /// The stored `event_type`.
            pub fn event_type(&self) -> &'static str {
                match self { $( Event::$name(_) => stringify!($name), )* }
            }

            /// The version this binary writes for `event_type`, if it knows the type.
            pub fn current_version(event_type: &str) -> Option<&'static str> {
                match event_type { $( stringify!($name) => Some($version), )* _ => None }
            }

            /// Every event type this binary knows, for docs and `dgm history --help`.
            pub const TYPES: &'static [&'static str] = &[ $( stringify!($name), )* ];
        }
    };
}

/// Where a version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Seed,
    Proposer,
    Rollback,
}

/// A trajectory: one execution of one version on one task (the replay buffer's unit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    pub agent: String,
    pub version: String,
    pub suite: String,
    pub task: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// `success` or `failure`.
    pub outcome: String,
    pub score: Option<f64>,
    /// timeout, crash, wrong_answer, syntax_error, out_of_memory, invalid_score, …
    pub error_category: Option<String>,
    pub rationale: Option<String>,
    pub log_excerpt: String,
    /// Blob hashes of the full outputs.
    pub stdout_blob: Option<String>,
    pub stderr_blob: Option<String>,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub peak_memory_bytes: Option<u64>,
    pub tokens: Option<u64>,
    pub cost_usd: Option<f64>,
}

/// A model's DGM-style diagnosis of a parent: what goes wrong, what could be
/// done, the one thing to do next and how, as a problem statement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiagnosisAnalysis {
    pub model: String,
    pub summary: String,
    pub possible_improvements: Vec<String>,
    pub chosen_proposal: String,
    pub implementation_suggestion: String,
    pub problem_statement: String,
}

events! {
    /// An agent was registered from its manifest; its seed version follows.
    AgentRegistered @ "2" {
        agent: String,
        manifest: AgentManifest,
        /// The directory it was registered from (resolves a relative `suite`).
        #[serde(default)]
        source: Option<String>,
    }
    /// A new immutable version of an agent's code.
    VersionCreated @ "1" {
        agent: String,
        version: String,
        parent: Option<String>,
        /// Content hash of the code tree (a blob).
        tree_hash: String,
        /// Unified diff against the parent (empty for a seed).
        patch: String,
        origin: Origin,
        summary: String,
    }
    /// A version was scored on one stage of a suite.
    VersionEvaluated @ "1" {
        agent: String,
        version: String,
        suite: String,
        stage: u32,
        split: String,
        score: Option<f64>,
        metrics: BTreeMap<String, f64>,
        evaluation_id: String,
    }
    /// A version joined the archive (it runs and keeps basic function).
    VersionAdmitted @ "1" { agent: String, version: String, reason: String }
    /// A version was kept out of the archive.
    VersionRejected @ "1" { agent: String, version: String, reason: String }
    /// The version users get by default changed (promotion).
    ActiveVersionChanged @ "1" {
        agent: String,
        from: Option<String>,
        to: String,
        reason: String,
    }
    /// A user rolled an agent back. Nothing is deleted: this is the record.
    RolledBack @ "1" {
        agent: String,
        from: Option<String>,
        to_version: String,
        /// Set when the target was given as "the active version as of event N".
        to_event: Option<u64>,
        reason: String,
    }
    /// An evolution run began, with its full configuration.
    RunStarted @ "1" {
        run_id: String,
        agent: String,
        suite: String,
        config: serde_json::Value,
    }
    RunCompleted @ "1" { run_id: String, summary: serde_json::Value }
    /// A run stopped early (Ctrl-C, a time limit); `dgm resume` continues it.
    RunInterrupted @ "1" { run_id: String, reason: String }
    /// One step of a run began: a parent was drawn (with the draw's weights).
    AttemptStarted @ "1" {
        run_id: String,
        attempt_id: String,
        generation: u32,
        index: u32,
        parent: String,
        /// A second archive version, for crossover.
        donor: Option<String>,
        selection: String,
        weights: Vec<(String, f64)>,
        seed: u64,
    }
    /// What the parent gets wrong, from the replay buffer and the ReasoningBank.
    DiagnosisMade @ "1" {
        run_id: String,
        attempt_id: String,
        parent: String,
        summary: String,
        categories: BTreeMap<String, u64>,
        rationales: Vec<String>,
        /// Strategies (ids) handed to the proposer.
        strategies: Vec<String>,
        /// A model's analysis (DGM style), when the proposer made one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        analysis: Option<DiagnosisAnalysis>,
    }
    /// One call to a language model (by a proposer, for diagnosis or a
    /// proposal): which model, how many tokens, how long, what it cost, how it
    /// ended. Never the API key.
    LlmCallMade @ "1" {
        run_id: String,
        attempt_id: Option<String>,
        /// diagnose, propose, retry (a mismatch fed back) or improve.
        purpose: String,
        model: String,
        prompt_tokens: u64,
        completion_tokens: u64,
        latency_ms: u64,
        cost_usd: f64,
        /// ok, http_429, http_500, timeout, malformed, transport, budget.
        outcome: String,
        error: Option<String>,
    }
    /// How an attempt ended, and why.
    AttemptFinished @ "1" {
        run_id: String,
        attempt_id: String,
        /// promoted, admitted, rejected, invalid, duplicate
        outcome: String,
        child: Option<String>,
        score: Option<f64>,
        reason: String,
        proposal_kind: Option<String>,
    }
    RunFailed @ "1" { run_id: String, error: String }
    /// A version began to be scored on one stage of a suite.
    BenchmarkStarted @ "1" {
        evaluation_id: String,
        agent: Option<String>,
        version: Option<String>,
        suite: String,
        stage: u32,
        split: String,
        tasks: u32,
    }
    /// … and was scored. Metrics are the trusted scorer's, aggregated.
    BenchmarkCompleted @ "1" {
        evaluation_id: String,
        score: Option<f64>,
        metrics: BTreeMap<String, f64>,
        passed_gate: bool,
    }
    /// One task execution, for the replay buffer.
    TrajectoryRecorded @ "1" {
        evaluation_id: String,
        trajectory: Trajectory,
    }
    /// A ReasoningBank memory: what kind of change worked for what diagnosis.
    StrategyStored @ "1" {
        strategy_id: String,
        agent: String,
        kind: String,
        diagnosis: String,
        summary: String,
    }
    /// A strategy was used; did it win?
    StrategyOutcomeRecorded @ "1" { strategy_id: String, success: bool }
    StrategyPruned @ "1" { strategy_id: String, reason: String }
    /// The sandbox supervisor began running a job.
    SandboxExecutionStarted @ "1" {
        execution_id: String,
        command: Vec<String>,
        limits: serde_json::Value,
    }
    /// … and finished it. Full outputs are blobs.
    SandboxExecutionFinished @ "1" {
        execution_id: String,
        status: String,
        exit_code: Option<i32>,
        wall_ms: u64,
        cpu_ms: u64,
        peak_memory_bytes: Option<u64>,
        stdout_blob: Option<String>,
        stderr_blob: Option<String>,
        error: Option<String>,
    }
}

impl cqrs_es::DomainEvent for Event {
    fn event_type(&self) -> String {
        Event::event_type(self).to_string()
    }

    fn event_version(&self) -> String {
        Event::current_version(Event::event_type(self))
            .unwrap_or("1")
            .to_string()
    }
}
