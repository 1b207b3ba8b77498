//! Memory, as the design card draws it: what the loop remembers between
//! attempts. The replay buffer's writes (every task's trajectory, recorded
//! with its evaluation: `replay`) and the ReasoningBank's (strategies, their
//! outcomes, win rates and pruning: `bank`).
//!
//! `engine` is plain async Rust over the store; `actor` is its thin actix
//! shell; `port` is what the loop talks to — either of them.

pub mod actor;
pub mod bank;
pub mod engine;
pub mod port;
pub mod replay;

pub use actor::MemoryActor;
pub use bank::PruneRule;
pub use engine::MemoryEngine;
pub use port::{Memory, MemoryError, Reply, Request, StrategyUse};
pub use replay::{EvaluationRecord, Subject, record_stage, record_version_evaluated};
