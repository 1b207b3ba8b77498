//! dgm's `PersistedEventRepository` for cqrs-es, on SQLite and PostgreSQL.
//!
//! Why our own rather than sqlite-es / postgres-es: a commit is written as
//! one multi-row INSERT that also assigns the global positions, under the
//! database's write lock (SQLite `BEGIN IMMEDIATE`; PostgreSQL a
//! transaction-scoped advisory lock), so positions are gapless and in commit
//! order without a per-row trigger. The table and its composite primary key
//! are the crates' own, so a duplicate (aggregate, sequence) is still the
//! optimistic-concurrency conflict cqrs-es expects.

use cqrs_es::Aggregate;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use serde_json::Value;
use sqlx::Row;

use crate::store::Db;

/// Rows per INSERT statement (well under both databases' parameter limits).
const CHUNK: usize = 500;

/// The lock every appender of a PostgreSQL log takes (also in the trigger).
pub(crate) const APPEND_LOCK: i64 = 7064236001;

pub(crate) struct LogRepository {
    db: Db,
}

impl LogRepository {
    pub(crate) fn new(db: &Db) -> Self {
        Self { db: db.clone() }
    }
}

fn conflict_or(e: sqlx::Error) -> PersistenceError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            PersistenceError::OptimisticLockError
        }
        _ => PersistenceError::ConnectionError(Box::new(e)),
    }
}

fn row_to_event(
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: &str,
    metadata: &str,
) -> Result<SerializedEvent, PersistenceError> {
    let payload: Value = serde_json::from_str(payload)
        .map_err(|e| PersistenceError::DeserializationError(Box::new(e)))?;
    let metadata: Value = serde_json::from_str(metadata)
        .map_err(|e| PersistenceError::DeserializationError(Box::new(e)))?;
    Ok(SerializedEvent {
        aggregate_id,
        sequence: sequence as usize,
        aggregate_type,
        event_type,
        event_version,
        payload,
        metadata,
    })
}

impl LogRepository {
    async fn select(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after: i64,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let rows: Vec<(String, String, i64, String, String, String, String)> = match &self.db {
            Db::Sqlite(pool) => sqlx::query(
                "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
                   FROM events WHERE aggregate_type = ? AND aggregate_id = ? AND sequence > ? ORDER BY sequence",
            )
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(after)
            .fetch_all(pool)
            .await
            .map_err(conflict_or)?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?, r.try_get(6)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(conflict_or)?,
            Db::Postgres(pool) => sqlx::query(
                "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload::text, metadata::text
                   FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence",
            )
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(after)
            .fetch_all(pool)
            .await
            .map_err(conflict_or)?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?, r.try_get(6)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(conflict_or)?,
        };
        rows.into_iter()
            .map(|(t, id, seq, et, ev, p, m)| row_to_event(t, id, seq, et, ev, &p, &m))
            .collect()
    }

    /// Appends `events` atomically, numbering them after the current head.
    pub(crate) async fn append(&self, events: &[SerializedEvent]) -> Result<(), PersistenceError> {
        if events.is_empty() {
            return Ok(());
        }
        let encoded: Vec<(String, String)> = events
            .iter()
            .map(|e| {
                Ok((
                    serde_json::to_string(&e.payload)?,
                    serde_json::to_string(&e.metadata)?,
                ))
            })
            .collect::<Result<_, serde_json::Error>>()
            .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
        match &self.db {
            Db::Sqlite(pool) => {
                // IMMEDIATE: take the write lock before reading the head.
                let mut tx = pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(conflict_or)?;
                sqlite_insert(&mut tx, events, &encoded)
                    .await
                    .map_err(conflict_or)?;
                tx.commit().await.map_err(conflict_or)?;
                Ok(())
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(conflict_or)?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(APPEND_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(conflict_or)?;
                let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(conflict_or)?;
                let mut position = head;
                for (chunk, enc) in events.chunks(CHUNK).zip(encoded.chunks(CHUNK)) {
                    let mut values = Vec::with_capacity(chunk.len());
                    for i in 0..chunk.len() {
                        let b = i * 8;
                        values.push(format!(
                            "(${}, ${}, ${}, ${}, ${}, ${}::json, ${}::json, ${})",
                            b + 1,
                            b + 2,
                            b + 3,
                            b + 4,
                            b + 5,
                            b + 6,
                            b + 7,
                            b + 8
                        ));
                    }
                    let sql = format!(
                        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, position) VALUES {}",
                        values.join(", ")
                    );
                    let mut q = sqlx::query(&sql);
                    for (e, (payload, metadata)) in chunk.iter().zip(enc) {
                        position += 1;
                        q = q
                            .bind(&e.aggregate_type)
                            .bind(&e.aggregate_id)
                            .bind(e.sequence as i64)
                            .bind(&e.event_type)
                            .bind(&e.event_version)
                            .bind(payload)
                            .bind(metadata)
                            .bind(position);
                    }
                    q.execute(&mut *tx).await.map_err(conflict_or)?;
                }
                tx.commit().await.map_err(conflict_or)?;
                Ok(())
            }
        }
    }
}

impl PersistedEventRepository for LogRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.select(A::TYPE, aggregate_id, -1).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.select(A::TYPE, aggregate_id, last_sequence as i64)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        // Event-store mode only: cqrs-es' snapshot stores apply events twice.
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        _snapshot: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        self.append(events).await
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let events = self.select(A::TYPE, aggregate_id, -1).await?;
        feed(events).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        // Every instance of this aggregate type, in global order.
        let ids: Vec<String> = match &self.db {
            Db::Sqlite(pool) => sqlx::query_scalar(
                "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = ?",
            )
            .bind(A::TYPE)
            .fetch_all(pool)
            .await
            .map_err(conflict_or)?,
            Db::Postgres(pool) => sqlx::query_scalar(
                "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = $1",
            )
            .bind(A::TYPE)
            .fetch_all(pool)
            .await
            .map_err(conflict_or)?,
        };
        let mut all = Vec::new();
        for id in ids {
            all.extend(self.select(A::TYPE, &id, -1).await?);
        }
        feed(all).await
    }
}

async fn sqlite_insert(
    conn: &mut sqlx::SqliteConnection,
    events: &[SerializedEvent],
    encoded: &[(String, String)],
) -> Result<(), sqlx::Error> {
    let head: i64 = sqlx::query_scalar("SELECT IFNULL(MAX(position), 0) FROM events")
        .fetch_one(&mut *conn)
        .await?;
    let mut position = head;
    for (chunk, enc) in events.chunks(CHUNK).zip(encoded.chunks(CHUNK)) {
        let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, position) VALUES {values}"
        );
        let mut q = sqlx::query(&sql);
        for (e, (payload, metadata)) in chunk.iter().zip(enc) {
            position += 1;
            q = q
                .bind(&e.aggregate_type)
                .bind(&e.aggregate_id)
                .bind(e.sequence as i64)
                .bind(&e.event_type)
                .bind(&e.event_version)
                .bind(payload)
                .bind(metadata)
                .bind(position);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn feed(events: Vec<SerializedEvent>) -> Result<ReplayStream, PersistenceError> {
    let (mut feed, stream) = ReplayStream::new(events.len().max(1));
    for e in events {
        feed.push(Ok(e)).await?;
    }
    Ok(stream)
}
