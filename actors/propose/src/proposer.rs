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
}

/// Everything a proposer needs to produce one child.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
}
