//! Proposers for dgm: what turns a parent version into a child.
//!
//! The evolution loop needs children to evaluate. This crate defines the
//! [`Proposer`] contract, ships the offline [`MutateProposer`] (genetic
//! programming on Python via tree-sitter, so dgm improves agents with no LLM
//! key), and the strict [`patch`] format every proposal is stored as.

mod crossover;
pub mod grammar;
pub mod mutate;
pub mod patch;
pub mod proposer;
pub mod python;
pub mod tree;

pub use mutate::{MutateConfig, MutateProposer, OperatorWeights};
pub use proposer::{
    AttemptNote, CallRecord, Diagnosis, DiagnosisAnalysis, FailureCategory, FailureExample,
    Feedback, PastProposal, Proposal, ProposalRequest, ProposeError, Proposer, Recorded,
    StrategyNote,
};
pub use tree::{CodeTree, FilePolicy};
