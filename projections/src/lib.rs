//! What we know: read models folded from the global event log.
//!
//! A [`Projection`] is a pure fold from events to keyed rows. The
//! [`projector`] keeps each one's rows in the database, caught up by reading
//! the log after its checkpoint; the same fold, replayed from position 0 up
//! to N, gives the state "as of N" and the rebuild that must equal the live
//! view byte for byte.

pub mod archive;
pub mod projector;
pub mod reasoning_bank;
pub mod replay_buffer;
pub mod rollback_history;
pub mod runs;

use std::collections::BTreeMap;

use dgm_events::Recorded;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use archive::{AgentArchive, Archive, VersionRow};
pub use projector::{ProjectionError, check_all, rebuild_all};
pub use reasoning_bank::{ReasoningBank, StrategyRow};
pub use replay_buffer::{ReplayBuffer, TrajectoryFilter, TrajectoryRow};
pub use rollback_history::{ActiveChange, RollbackHistory};
pub use runs::{RunRow, Runs};

/// A read model: rows keyed by string, changed only by `apply`.
pub trait Projection: Send + Sync + 'static {
    /// The view's name in `view_rows`.
    const NAME: &'static str;
    type Row: Serialize + DeserializeOwned + Clone + PartialEq + std::fmt::Debug + Send + Sync;

    fn apply(rows: &mut BTreeMap<String, Self::Row>, event: &Recorded);

    /// True when `apply` only ever adds rows, each keyed after every row
    /// already there, and never reads, changes or removes one (the replay
    /// buffer): a rebuild can then store the rows of each page of the log
    /// while it folds the next. A rebuild checks the key order.
    const INSERT_ONLY: bool = false;

    /// The same fold, handed the event itself (when no other view needs it
    /// after this one): a projection that keeps much of an event — the
    /// replay buffer — moves it into its row instead of copying it. Must
    /// leave `rows` exactly as [`Projection::apply`] would.
    fn apply_owned(rows: &mut BTreeMap<String, Self::Row>, event: Recorded) {
        Self::apply(rows, &event);
    }
}

/// Every projection, by name, for rebuild and check.
pub const ALL: &[&str] = &[
    Archive::NAME,
    RollbackHistory::NAME,
    ReplayBuffer::NAME,
    ReasoningBank::NAME,
    Runs::NAME,
];
