//! What happens in dgm: the event types, the aggregates that guard them, the
//! global event log (SQLite or PostgreSQL) and the content-addressed blobs.
//!
//! Everything that changes state appends events here; everything a user
//! reads is folded from them (see the `dgm-projections` crate).

pub mod agent;
pub mod aggregates;
pub mod blobs;
mod checkpoint;
pub mod event;
pub mod metadata;
mod migrate;
pub mod read;
mod repository;
mod sqlite_raw;
pub mod store;
mod tail;
pub mod testing;
pub mod upcast;
pub mod views;

pub use agent::{AgentManifest, Files};
pub use aggregates::{AgentCommand, CommandError};
pub use event::*;
pub use metadata::Metadata;
pub use migrate::SCHEMA_VERSION;
pub use read::RawPage;
pub use store::{Recorded, Store, StoreError, StoreUrl, StreamType};
