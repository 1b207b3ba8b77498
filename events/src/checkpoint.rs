//! Checkpointing SQLite's write-ahead log off the commit path.
//!
//! In WAL mode a commit only appends pages to the `-wal` file; a checkpoint
//! copies them into the database file and syncs it. By default SQLite runs
//! that inside whichever commit pushes the WAL past 1,000 pages, so that
//! commit (an append, a view update) waits for the disk. Here a task with a
//! connection of its own runs a PASSIVE checkpoint (one that waits for no
//! reader or writer) each time this process has committed about as much, and
//! commits go on meanwhile. Each connection's own automatic checkpoint stays
//! as a backstop at a higher mark ([`BACKSTOP_PAGES`]), should the task fall
//! behind. Durability is what `synchronous=NORMAL` in WAL mode gives either
//! way: the same syncs happen, only not while a commit waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::store::StoreError;

/// Bytes committed between two checkpoints: SQLite's default of 1,000
/// pages of 4 KiB.
const EVERY_BYTES: u64 = 1_000 * 4_096;

/// The WAL size, in pages, past which the task makes sure the WAL starts
/// over (it would otherwise grow while commits keep coming).
const RESTART_PAGES: i64 = 8_000;

/// The WAL size, in pages, at which a committing connection checkpoints
/// itself (SQLite's `wal_autocheckpoint`).
pub(crate) const BACKSTOP_PAGES: u32 = 16_000;

/// Counts what this process commits and wakes the checkpointing task.
pub(crate) struct Checkpointer {
    written: AtomicU64,
    wake: Arc<Notify>,
    task: AbortHandle,
}

impl Checkpointer {
    /// Opens the task's connection and starts it.
    pub(crate) async fn start(options: &SqliteConnectOptions) -> Result<Self, StoreError> {
        let conn = options.connect().await?;
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(run(conn, wake.clone())).abort_handle();
        Ok(Self {
            written: AtomicU64::new(0),
            wake,
            task,
        })
    }

    /// Notes that a commit of this process wrote about `bytes`.
    pub(crate) fn wrote(&self, bytes: usize) {
        let bytes = bytes as u64;
        let before = self.written.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes >= EVERY_BYTES {
            self.written.store(0, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(mut conn: SqliteConnection, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        // Busy (another checkpoint running) or failing: the next wake-up, the
        // backstop or the last connection's close checkpoints instead.
        let wal_pages = match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut conn)
            .await
        {
            Ok((_, wal_pages, _)) => wal_pages,
            Err(e) => {
                tracing::debug!("background checkpoint: {e}");
                continue;
            }
        };
        // A writer starts the WAL over only once a checkpoint has caught up
        // with every commit; with commits arriving while PASSIVE copies, that
        // may not happen. RESTART holds writers off while it copies what
        // PASSIVE left (little) so that the next commit starts it over.
        if wal_pages >= RESTART_PAGES
            && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                .execute(&mut conn)
                .await
        {
            tracing::debug!("background checkpoint: {e}");
        }
    }
}
