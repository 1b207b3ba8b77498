//! The Darwin loop: select a parent, diagnose it from the replay buffer,
//! propose a child, validate it, evaluate it in stages, decide, remember.
//!
//! `engine` is plain async Rust; `actor` is the actix shell (one actor per
//! evolving agent); `run_state` makes runs resumable from the log; `known`
//! follows the log in memory so each step reads current views cheaply;
//! `selection`, `decide` and `diagnose` are the pure rules.

pub mod actor;
pub mod builder;
pub mod config;
pub mod decide;
pub mod diagnose;
pub mod engine;
pub mod known;
pub mod record;
pub mod run_state;
pub mod selection;

pub use builder::Darwin;
pub use config::EvolveConfig;
pub use engine::{Evolution, EvolveError, NoObserver, Observer, Summary};

/// A score for humans.
pub fn fmt_score(score: Option<f64>) -> String {
    score
        .map(|s| format!("{s:.4}"))
        .unwrap_or_else(|| "-".into())
}
