//! Storage for projections: view rows and the position each view has
//! folded, written together in one transaction so a crash can never leave
//! a view ahead of or behind its checkpoint.

use std::collections::BTreeMap;

use crate::sqlite_raw::Statement;
use crate::store::{Db, Store, StoreError, either_pool};

/// Keys per SQLite DELETE (one parameter each, under SQLite's limit of
/// 32,766), and rows written per lock of the connection handle.
const SQLITE_CHUNK: usize = 2_000;

/// Rows per PostgreSQL statement (sent as arrays, so any size binds as three
/// parameters; this only bounds one message).
const POSTGRES_CHUNK: usize = 10_000;

/// Rows of one view (key → JSON) and the position they reflect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewSnapshot {
    pub checkpoint: u64,
    pub rows: BTreeMap<String, String>,
}

/// Rows as stored (key, JSON), back to back in one string: a batch costs a
/// few allocations however many rows it holds, not two per row.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RowBatch {
    text: String,
    /// Where each row's key ends and where its value ends, in `text` (its
    /// key starts where the row before ends).
    ends: Vec<(usize, usize)>,
}

impl RowBatch {
    /// Room for `rows` rows of `bytes` bytes in all.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(rows),
        }
    }

    pub fn push(&mut self, key: &str, value: &str) {
        self.text.push_str(key);
        let key_end = self.text.len();
        self.text.push_str(value);
        self.ends.push((key_end, self.text.len()));
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The rows (key, value), in the order pushed.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0;
        self.ends.iter().map(move |&(key_end, end)| {
            let row = (&self.text[start..key_end], &self.text[key_end..end]);
            start = end;
            row
        })
    }

    /// Keys and values, in bytes.
    pub fn bytes(&self) -> usize {
        self.text.len()
    }
}

/// What a [`RowChunks`] hands [`Store::replace_view`] next.
#[derive(Debug)]
pub enum ViewRows {
    /// More rows, after those handed before in key order.
    Chunk(RowBatch),
    /// No more rows: they reflect the log up to `checkpoint`.
    End { checkpoint: u64 },
}

/// The rows of a whole view for [`Store::replace_view`], chunk by chunk,
/// possibly while they are still being computed.
pub trait RowChunks: Send {
    /// The next rows or the end; an error aborts the replacement.
    fn next_chunk(&mut self) -> impl Future<Output = Result<ViewRows, StoreError>> + Send;
}

/// A change to one view, computed by the projector.
#[derive(Debug, Default)]
pub struct ViewChange {
    pub upserts: Vec<(String, String)>,
    pub deletes: Vec<String>,
}

impl Store {
    /// The stored rows of `view` and its checkpoint (0 if never projected).
    pub async fn load_view(&self, view: &str) -> Result<ViewSnapshot, StoreError> {
        let checkpoint = self.view_checkpoint(view).await?;
        let rows = match &self.db {
            Db::Sqlite(pool) => {
                // Directly, not row by row through sqlx: see `sqlite_raw`.
                let mut conn = pool.acquire().await?;
                let mut handle = conn.lock_handle().await?;
                let mut select = Statement::prepare(
                    &mut handle,
                    "SELECT key, value FROM view_rows WHERE view = ?",
                )?;
                select.bind_text(1, view)?;
                let mut rows = BTreeMap::new();
                while select.step()? {
                    rows.insert(
                        select.column_str(0)?.to_string(),
                        select.column_str(1)?.to_string(),
                    );
                }
                rows
            }
            Db::Postgres(pool) => sqlx::query_as::<_, (String, String)>(
                "SELECT key, value FROM view_rows WHERE view = $1",
            )
            .bind(view)
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect(),
        };
        Ok(ViewSnapshot { checkpoint, rows })
    }

    /// The position `view` has folded (0 if never projected), without its rows.
    pub async fn view_checkpoint(&self, view: &str) -> Result<u64, StoreError> {
        let checkpoint: Option<i64> = either_pool!(&self.db, |pool| {
            sqlx::query_scalar("SELECT position FROM view_checkpoints WHERE view = $1")
                .bind(view)
                .fetch_optional(pool)
                .await?
        });
        Ok(checkpoint.unwrap_or(0) as u64)
    }

    /// Applies `change` and moves the checkpoint from `from` to `to`, in one
    /// transaction. Returns false (and changes nothing) when another process
    /// moved the checkpoint first; the caller reloads and folds again.
    pub async fn save_view(
        &self,
        view: &str,
        from: u64,
        to: u64,
        change: &ViewChange,
    ) -> Result<bool, StoreError> {
        either_pool!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            let moved = if from == 0 {
                sqlx::query("INSERT INTO view_checkpoints (view, position) VALUES ($1, $2) ON CONFLICT (view) DO UPDATE SET position = excluded.position WHERE view_checkpoints.position = 0")
                    .bind(view).bind(to as i64).execute(&mut *tx).await?.rows_affected()
            } else {
                sqlx::query(
                    "UPDATE view_checkpoints SET position = $1 WHERE view = $2 AND position = $3",
                )
                .bind(to as i64)
                .bind(view)
                .bind(from as i64)
                .execute(&mut *tx)
                .await?
                .rows_affected()
            };
            if moved != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            tx.write_change(view, change).await?;
            tx.commit().await?;
        });
        // A no-op on PostgreSQL, which has no checkpointer.
        self.wrote(bytes(&change.upserts));
        Ok(true)
    }

    /// Whether transactions writing different views run at once: on
    /// PostgreSQL they do (until they swap their rows in, a moment); SQLite
    /// has one writer at a time, and the others would wait for it polling.
    pub fn writes_views_concurrently(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }

    /// Replaces every row of `view` with `rows` and sets its checkpoint to
    /// the position they end with, in one transaction (a rebuild: readers
    /// see the old view or the new one, never a half-written one). Rows are
    /// written as `rows` hands them over, so the caller may still be
    /// computing later rows meanwhile (on this task too: this yields after
    /// each chunk); an error from `rows` rolls everything back. Returns the
    /// new checkpoint.
    pub async fn replace_view(
        &self,
        view: &str,
        rows: &mut impl RowChunks,
    ) -> Result<u64, StoreError> {
        match &self.db {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("DELETE FROM view_rows WHERE view = ?")
                    .bind(view)
                    .execute(&mut *tx)
                    .await?;
                let mut written = 0;
                let to = loop {
                    match rows.next_chunk().await? {
                        ViewRows::Chunk(chunk) => {
                            // The view is empty now: plain inserts, no conflict to look for.
                            sqlite_write(&mut tx, view, chunk.iter(), INSERT).await?;
                            written += chunk.bytes();
                            tokio::task::yield_now().await;
                        }
                        ViewRows::End { checkpoint } => break checkpoint,
                    }
                };
                sqlx::query(SET_CHECKPOINT)
                    .bind(view)
                    .bind(to as i64)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                self.wrote(written);
                Ok(to)
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                postgres_lock_checkpoint(&mut tx, view).await?;
                let partition = postgres_partition(view);
                if let Some(partition) = &partition
                    && !postgres_table_exists(&mut tx, partition).await?
                {
                    // The view's first rebuild: its partition first.
                    tx.rollback().await?;
                    postgres_create_partition(pool, view, partition).await?;
                    tx = pool.begin().await?;
                    postgres_lock_checkpoint(&mut tx, view).await?;
                }
                let rebuilt = postgres_start_rebuild(&mut tx, view, partition).await?;
                let to = postgres_copy(&mut tx, rebuilt.table(), view, rows).await?;
                postgres_finish_rebuild(&mut tx, view, &rebuilt).await?;
                sqlx::query(SET_CHECKPOINT)
                    .bind(view)
                    .bind(to as i64)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(to)
            }
        }
    }

    /// Forgets `view` entirely (rows and checkpoint), for a rebuild.
    pub async fn clear_view(&self, view: &str) -> Result<(), StoreError> {
        either_pool!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM view_rows WHERE view = $1")
                .bind(view)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM view_checkpoints WHERE view = $1")
                .bind(view)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}

/// Sets a view's checkpoint, whatever it was (the end of a rebuild).
const SET_CHECKPOINT: &str = "INSERT INTO view_checkpoints (view, position) VALUES ($1, $2) ON CONFLICT (view) DO UPDATE SET position = excluded.position";

/// The rows of a [`ViewChange`], written in the transaction open on this
/// connection: the one step of [`Store::save_view`] that each back end does
/// its own way (SQLite: statements stepped directly, see `sqlite_raw`;
/// PostgreSQL: arrays).
trait WriteChange {
    async fn write_change(&mut self, view: &str, change: &ViewChange) -> Result<(), StoreError>;
}

impl WriteChange for sqlx::SqliteConnection {
    async fn write_change(&mut self, view: &str, change: &ViewChange) -> Result<(), StoreError> {
        sqlite_delete(self, view, &change.deletes).await?;
        for rows in change.upserts.chunks(SQLITE_CHUNK) {
            let rows = rows
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str()));
            sqlite_write(self, view, rows, UPSERT).await?;
        }
        Ok(())
    }
}

impl WriteChange for sqlx::PgConnection {
    async fn write_change(&mut self, view: &str, change: &ViewChange) -> Result<(), StoreError> {
        postgres_delete(self, view, &change.deletes).await?;
        postgres_upsert(self, view, &change.upserts).await?;
        Ok(())
    }
}

fn bytes(rows: &[(String, String)]) -> usize {
    rows.iter()
        .map(|(key, value)| key.len() + value.len())
        .sum()
}

async fn sqlite_delete(
    conn: &mut sqlx::SqliteConnection,
    view: &str,
    keys: &[String],
) -> Result<(), sqlx::Error> {
    for keys in keys.chunks(SQLITE_CHUNK) {
        let sql = format!(
            "DELETE FROM view_rows WHERE view = ? AND key IN ({})",
            vec!["?"; keys.len()].join(", ")
        );
        let mut q = sqlx::query(&sql).bind(view);
        for key in keys {
            q = q.bind(key);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

const UPSERT: &str = "INSERT INTO view_rows (view, key, value) VALUES (?, ?, ?)
                      ON CONFLICT (view, key) DO UPDATE SET value = excluded.value";
const INSERT: &str = "INSERT INTO view_rows (view, key, value) VALUES (?, ?, ?)";

/// Writes `rows` with `statement` (UPSERT or INSERT), prepared once and
/// stepped per row, directly (see `sqlite_raw`): a multi-row INSERT through
/// sqlx costs more in binding and copying than SQLite spends storing rows.
/// The handle is locked out of sqlx's worker (and this task runs SQLite
/// itself) until they are written: callers hand over a chunk at a time.
async fn sqlite_write<'r>(
    conn: &mut sqlx::SqliteConnection,
    view: &str,
    rows: impl Iterator<Item = (&'r str, &'r str)>,
    statement: &str,
) -> Result<(), StoreError> {
    let mut handle = conn.lock_handle().await?;
    let mut write = Statement::prepare(&mut handle, statement)?;
    write.bind_text(1, view)?;
    for (key, value) in rows {
        write.execute_with(2, &[key, value])?;
    }
    Ok(())
}

/// Advisory lock taken to create a view's partition: two processes creating
/// partitions at once would each hold `view_rows` (from moving the view's
/// rows out of the default partition) while waiting for the other's.
const VIEW_PARTITION_LOCK: i64 = 7_064_236_002;

/// The partition of `view_rows` that holds `view`'s rows once it has been
/// rebuilt; `None` for a name that cannot be part of a table name as it is
/// (or is too long for the names derived from it), whose rows stay in the
/// default partition.
fn postgres_partition(view: &str) -> Option<String> {
    // PostgreSQL truncates identifiers at 63 bytes; the longest name made
    // from this one is `{partition}_new_pkey`.
    const PREFIX: &str = "view_rows_for_";
    let plain = view
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    (plain && !view.is_empty() && PREFIX.len() + view.len() + "_new_pkey".len() <= 63)
        .then(|| format!("{PREFIX}{view}"))
}

/// Locks `view`'s checkpoint row (creating it at 0 if it is missing) before
/// anything of the view's rows, in the order `save_view` takes them: a
/// catch-up that meets a rebuild waits for it, then finds the checkpoint
/// moved, instead of holding the checkpoint while it waits for the rows (a
/// deadlock).
async fn postgres_lock_checkpoint(
    conn: &mut sqlx::PgConnection,
    view: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO view_checkpoints (view, position) VALUES ($1, 0) ON CONFLICT (view) DO UPDATE SET position = view_checkpoints.position")
        .bind(view)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether `table` exists: a query of the catalog, not `to_regclass`, whose
/// cached answer may predate another process's CREATE that this one waited for.
async fn postgres_table_exists(
    conn: &mut sqlx::PgConnection,
    table: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE c.relname = $1 AND n.nspname = current_schema())",
    )
    .bind(table)
    .fetch_one(conn)
    .await
}

/// Gives `view` its `partition` (see
/// `migrations/postgres/0004_view_rows_per_view.sql`) unless another process
/// just did, moving its rows out of the default partition, in a short
/// transaction of its own: creating a partition locks all of `view_rows`
/// until commit, which must not last a whole rebuild. The checkpoint row is
/// locked first, so no catch-up of the view writes rows meanwhile; the
/// advisory lock keeps two processes from creating partitions at once (each
/// would hold `view_rows` while waiting for the other).
async fn postgres_create_partition(
    pool: &sqlx::PgPool,
    view: &str,
    partition: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    postgres_lock_checkpoint(&mut tx, view).await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(VIEW_PARTITION_LOCK)
        .execute(&mut *tx)
        .await?;
    if !postgres_table_exists(&mut tx, partition).await? {
        // Both names are plain (`postgres_partition`): no quoting needed. A
        // partition cannot be created for values the default one holds.
        sqlx::raw_sql(&format!(
            "CREATE TEMPORARY TABLE dgm_moving_view ON COMMIT DROP AS
                 SELECT view, key, value FROM view_rows WHERE view = '{view}';
             DELETE FROM view_rows WHERE view = '{view}';
             CREATE TABLE {partition} PARTITION OF view_rows FOR VALUES IN ('{view}');
             INSERT INTO {partition} (view, key, value) SELECT view, key, value FROM dgm_moving_view;"
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Where a rebuild of a view writes its rows on PostgreSQL.
enum Rebuilt {
    /// A view without a partition of its own (`postgres_partition`): its
    /// old rows were deleted from the default partition, the new ones go there.
    InDefault,
    /// The rows go into a new table without an index, which replaces the
    /// view's partition once they are all in.
    Replacement { partition: String, table: String },
}

impl Rebuilt {
    /// The table to COPY the new rows into.
    fn table(&self) -> &str {
        match self {
            Rebuilt::InDefault => "view_rows",
            Rebuilt::Replacement { table, .. } => table,
        }
    }
}

/// Prepares the table a rebuild of `view` writes into: for a view with a
/// partition (`postgres_create_partition`), a new table to fill and swap in
/// at the end (`postgres_finish_rebuild`). Loading rows into a table without
/// an index and building the index afterwards costs the server about a third
/// less than inserting them into an indexed one, no dead rows are left
/// behind, and readers see the old rows until the swap. Nothing here locks
/// `view_rows` itself, so rebuilds of different views do not wait for each
/// other until they swap.
async fn postgres_start_rebuild(
    conn: &mut sqlx::PgConnection,
    view: &str,
    partition: Option<String>,
) -> Result<Rebuilt, sqlx::Error> {
    let Some(partition) = partition else {
        sqlx::query("DELETE FROM view_rows WHERE view = $1")
            .bind(view)
            .execute(conn)
            .await?;
        return Ok(Rebuilt::InDefault);
    };
    // Columns spelled out rather than `LIKE view_rows`, which would lock
    // `view_rows` until commit. The CHECK lets ATTACH skip scanning the rows.
    let table = format!("{partition}_new");
    sqlx::raw_sql(&format!(
        "CREATE TABLE {table} (
             view  text COLLATE \"C\" NOT NULL,
             key   text COLLATE \"C\" NOT NULL,
             value text             NOT NULL,
             CONSTRAINT in_view CHECK (view = '{view}'))"
    ))
    .execute(conn)
    .await?;
    Ok(Rebuilt::Replacement { partition, table })
}

/// Swaps a replacement table in for the view's partition, once its rows are
/// in: its primary key is built in one pass, then it takes the old
/// partition's place and names. `view_rows` is locked from here to the
/// commit, a moment.
async fn postgres_finish_rebuild(
    conn: &mut sqlx::PgConnection,
    view: &str,
    rebuilt: &Rebuilt,
) -> Result<(), sqlx::Error> {
    let Rebuilt::Replacement { partition, table } = rebuilt else {
        return Ok(());
    };
    sqlx::raw_sql(&format!(
        "ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (view, key);
         ALTER TABLE view_rows DETACH PARTITION {partition};
         DROP TABLE {partition};
         ALTER TABLE {table} RENAME TO {partition};
         ALTER INDEX {table}_pkey RENAME TO {partition}_pkey;
         ALTER TABLE view_rows ATTACH PARTITION {partition} FOR VALUES IN ('{view}');"
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Inserts `rows` into an emptied view (`table`, from [`Rebuilt::table`])
/// with COPY in binary format, PostgreSQL's bulk path: no
/// conflict can arise, so no upsert is needed, and nothing is escaped or
/// parsed as text. Returns the checkpoint the rows end with.
async fn postgres_copy(
    conn: &mut sqlx::PgConnection,
    table: &str,
    view: &str,
    rows: &mut impl RowChunks,
) -> Result<u64, StoreError> {
    /// Bytes per message sent.
    const BATCH: usize = 1 << 20;
    /// The format's signature, flags (none) and header extension (none).
    const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
    /// A tuple count of -1 ends the data.
    const TRAILER: [u8; 2] = (-1i16).to_be_bytes();
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {table} (view, key, value) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let mut data = Vec::with_capacity(BATCH + 4096);
    data.extend_from_slice(HEADER);
    let sent = async {
        loop {
            let chunk = match rows.next_chunk().await? {
                ViewRows::Chunk(chunk) => chunk,
                ViewRows::End { checkpoint } => return Ok::<_, StoreError>(checkpoint),
            };
            for (key, value) in chunk.iter() {
                data.extend_from_slice(&3i16.to_be_bytes());
                for field in [view, key, value] {
                    let len = i32::try_from(field.len()).map_err(|_| {
                        StoreError::Database(format!(
                            "a row of view `{view}` is over 2 GiB: PostgreSQL cannot store it"
                        ))
                    })?;
                    data.extend_from_slice(&len.to_be_bytes());
                    data.extend_from_slice(field.as_bytes());
                }
                if data.len() >= BATCH {
                    copy.send(data.as_slice()).await?;
                    data.clear();
                }
            }
            tokio::task::yield_now().await;
        }
    }
    .await;
    let to = match sent {
        Ok(to) => to,
        Err(e) => {
            // The transaction rolls back either way; the first error is the one to tell.
            if let Err(abort) = copy.abort(e.to_string()).await {
                tracing::debug!("aborting COPY into view `{view}`: {abort}");
            }
            return Err(e);
        }
    };
    data.extend_from_slice(&TRAILER);
    copy.send(data.as_slice()).await?;
    copy.finish().await?;
    Ok(to)
}

async fn postgres_delete(
    conn: &mut sqlx::PgConnection,
    view: &str,
    keys: &[String],
) -> Result<(), sqlx::Error> {
    for keys in keys.chunks(POSTGRES_CHUNK) {
        sqlx::query("DELETE FROM view_rows WHERE view = $1 AND key = ANY($2)")
            .bind(view)
            .bind(keys)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn postgres_upsert(
    conn: &mut sqlx::PgConnection,
    view: &str,
    rows: &[(String, String)],
) -> Result<(), sqlx::Error> {
    for rows in rows.chunks(POSTGRES_CHUNK) {
        let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        let values: Vec<&str> = rows.iter().map(|(_, v)| v.as_str()).collect();
        sqlx::query(
            "INSERT INTO view_rows (view, key, value) SELECT $1, * FROM UNNEST($2::text[], $3::text[])
             ON CONFLICT (view, key) DO UPDATE SET value = excluded.value",
        )
        .bind(view)
        .bind(&keys)
        .bind(&values)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
