//! The contract every proposer fulfils, whatever produces the change.
//!
//! The evolution loop asks "given this parent, its diagnosis and maybe a
//! donor, give me a child"; the offline mutation engine, the LLM proposer and
//! the self-referential proposer all answer through [`Proposer`], so the loop
//! never knows which one it talks to.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::tree::{CodeTree, FilePolicy};

/// One kind of failure seen in the parent's trajectories, with how often it happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCategory {
    /// Error category as the benchmark runner names it (e.g. `timeout`, `wrong_answer`).
    pub category: String,
    /// Number of failed trajectories in this category.
    pub count: u64,
}

/// What is wrong with the parent, as the diagnosis step saw it in the replay buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// A human-readable summary (also what an LLM prompt would quote).
    pub summary: String,
    /// Failure categories with counts, most frequent first.
    pub failure_categories: Vec<FailureCategory>,
    /// Failure rationales and useful ReasoningBank strategies, as text.
    pub rationales: Vec<String>,
    /// Failed trajectories of the parent, with their log (stderr) excerpts.
    #[serde(default)]
    pub failures: Vec<FailureExample>,
    /// A model's analysis of the failures (DGM style), when a proposer made one.
    #[serde(default)]
    pub analysis: Option<DiagnosisAnalysis>,
}

/// One failed trajectory of the parent, as a prompt quotes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureExample {
    pub task: String,
    pub category: String,
    pub rationale: Option<String>,
    /// The end of the run's output (stderr first), already capped by the runner.
    pub excerpt: String,
}

/// A DGM-style diagnosis by a model: what goes wrong and the one change to make next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosisAnalysis {
    /// The model that wrote it.
    pub model: String,
    pub summary: String,
    pub possible_improvements: Vec<String>,
    pub chosen_proposal: String,
    pub implementation_suggestion: String,
    pub problem_statement: String,
}

/// A ReasoningBank strategy as the proposer sees it: what worked, and how often.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StrategyNote {
    pub kind: String,
    pub diagnosis: String,
    pub summary: String,
    /// Wins / uses (0 when never used since it was stored).
    pub win_rate: f64,
    pub uses: u64,
}

/// An earlier attempt on this lineage (the parent and its ancestors), with its outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttemptNote {
    /// The version the attempt proposed from.
    pub parent: String,
    /// `kind: summary` of the proposal.
    pub summary: String,
    /// promoted, admitted, rejected, invalid, duplicate.
    pub outcome: String,
    pub score: Option<f64>,
    pub reason: String,
}

/// One call a proposer made to a model, for the event log. Never holds a key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// `diagnose`, `propose`, `retry` (a mismatch fed back) or `improve`.
    pub purpose: String,
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub latency_ms: u64,
    pub cost_usd: f64,
    /// `ok`, `http_429`, `http_500`, `timeout`, `malformed`, `transport`, `budget`.
    pub outcome: String,
    pub error: Option<String>,
}

/// A result together with the model calls made to produce it.
#[derive(Debug)]
pub struct Recorded<T> {
    pub value: T,
    pub calls: Vec<CallRecord>,
}

impl<T> Recorded<T> {
    /// A result that cost no model call.
    pub fn free(value: T) -> Self {
        Self {
            value,
            calls: Vec::new(),
        }
    }
}

/// How a proposal fared, told back to the proposer once its attempt is decided.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// The request's seed: which proposal this is about.
    pub seed: u64,
    /// The proposal's kind (`llm:MODEL`, `mutate:constant`, ...).
    pub kind: String,
    /// Child train score − parent train score; `None` when the child was not scored.
    pub improvement: Option<f64>,
}

/// Everything a proposer needs to produce one child.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProposalRequest {
    /// The parent version's full code.
    pub parent: CodeTree,
    /// Glob patterns or exact paths of files that may change.
    pub evolvable: Vec<String>,
    /// Glob patterns or exact paths that must never change (they win over `evolvable`).
    pub protected: Vec<String>,
    /// The parent's diagnosis.
    pub diagnosis: Diagnosis,
    /// A second archive version to recombine with (crossover), if any.
    pub donor: Option<CodeTree>,
    /// Seed for every random choice: the same request gives the same proposal.
    pub seed: u64,
    /// The parent's train score, when it has one.
    #[serde(default)]
    pub parent_score: Option<f64>,
    /// Live ReasoningBank strategies of this agent, best first.
    #[serde(default)]
    pub strategies: Vec<StrategyNote>,
    /// Recent attempts on this lineage, newest first.
    #[serde(default)]
    pub lineage: Vec<AttemptNote>,
}

impl ProposalRequest {
    /// A request with no diagnosis and no donor.
    pub fn new(
        parent: CodeTree,
        evolvable: Vec<String>,
        protected: Vec<String>,
        seed: u64,
    ) -> Self {
        Self {
            parent,
            evolvable,
            protected,
            diagnosis: Diagnosis::default(),
            donor: None,
            seed,
            parent_score: None,
            strategies: Vec::new(),
            lineage: Vec::new(),
        }
    }

    /// The file policy implied by `evolvable` and `protected`.
    pub fn policy(&self) -> FilePolicy {
        FilePolicy::new(&self.evolvable, &self.protected)
    }
}

/// A proposed child version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The child's full code (unchanged files included).
    pub files: CodeTree,
    /// Kind of change, e.g. `mutate:constant`, `mutate:operator`, `crossover:subexpr`;
    /// several changes are joined with `+`.
    pub kind: String,
    /// What changed, for humans, e.g. `changed constant 1.0 -> 0.5 at priority.py:12`.
    pub summary: String,
}

/// Why a proposer produced no child.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// Nothing evolvable, or every try gave an invalid or unchanged child.
    #[error("no change possible: {0}")]
    NoChangePossible(String),
    /// An evolvable file of the parent does not parse, so it cannot be mutated safely.
    #[error("cannot parse {path}: {reason}")]
    Parse { path: String, reason: String },
    /// An EVOLVE-BLOCK-START without its END (or the reverse).
    #[error("unbalanced EVOLVE-BLOCK markers in {path}: {reason}")]
    Markers { path: String, reason: String },
    /// The proposer's backend failed (LLM transport, subprocess, ...).
    #[error("proposer backend failed: {0}")]
    Backend(String),
}

/// Something that turns a parent (plus diagnosis and donor) into a child.
#[async_trait]
pub trait Proposer: Send + Sync {
    /// Short name recorded in events (`mutate`, `llm`, ...).
    fn name(&self) -> &str;

    /// Proposes one child. A child always differs from the parent and only in evolvable files.
    async fn propose(&self, request: &ProposalRequest) -> Result<Proposal, ProposeError>;

    /// [`Proposer::propose`], with the model calls it made (the loop logs them).
    async fn propose_recorded(
        &self,
        request: &ProposalRequest,
    ) -> Recorded<Result<Proposal, ProposeError>> {
        Recorded::free(self.propose(request).await)
    }

    /// A model's analysis of the parent's failures, for proposers that make one
    /// (the loop stores it with the diagnosis and hands it back in the request).
    async fn analyse(
        &self,
        _request: &ProposalRequest,
    ) -> Recorded<Result<Option<DiagnosisAnalysis>, ProposeError>> {
        Recorded::free(Ok(None))
    }

    /// How a proposal fared (bandits over models learn from it).
    fn observe(&self, _feedback: &Feedback) {}

    /// A resumed run's earlier proposals, oldest first, so what the
    /// proposer learned from them is what it knew before the restart.
    fn restore(&self, _past: &[PastProposal]) {}
}

/// One earlier proposal of a run, as the log recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct PastProposal {
    /// The request's seed.
    pub seed: u64,
    /// The model calls made for its attempt, in order.
    pub calls: Vec<CallRecord>,
    /// Its attempt has finished.
    pub finished: bool,
    /// What [`Proposer::observe`] was told, when it was told anything.
    pub feedback: Option<Feedback>,
}
