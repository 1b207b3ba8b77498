//! The Darwin loop: select a parent, diagnose it from the replay buffer,
//! propose a child, predict, validate, evaluate it in stages, decide,
//! approve, remember.
//!
//! - `steps/`: one module per step, each plain functions or a small type
//!   (`predict`, `evaluate`, `approve` and `remember` behind ports);
//! - `attempt`: one attempt, the steps in order; `evolution`: the run —
//!   generations, concurrency, resumption;
//! - `run` (what the steps share), `budget` (when a run stops), `cache`
//!   (code trees and directories), `summary`;
//! - `run_state` makes runs resumable from the log; `known` follows the log
//!   in memory so each step reads current views cheaply; `selection` holds
//!   the parent-selection strategies;
//! - `actor` is the actix shell (one actor per evolving agent).

pub mod actor;
pub mod attempt;
pub mod budget;
pub mod builder;
pub mod cache;
pub mod config;
pub mod error;
pub mod evolution;
pub mod known;
pub mod run;
pub mod run_state;
pub mod selection;
pub mod steps;
pub mod summary;
pub mod testing;

pub use builder::Darwin;
pub use config::EvolveConfig;
pub use error::EvolveError;
pub use evolution::{Evolution, NoObserver, Observer};
pub use summary::Summary;

/// A score for humans.
pub fn fmt_score(score: Option<f64>) -> String {
    score
        .map(|s| format!("{s:.4}"))
        .unwrap_or_else(|| "-".into())
}
