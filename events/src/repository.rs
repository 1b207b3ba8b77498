//! dgm's cqrs-es `EventStore`, on SQLite and PostgreSQL.
//!
//! Why our own rather than cqrs-es' `PersistedEventStore` over sqlite-es /
//! postgres-es: those turn every event into a `serde_json::Value` before a
//! repository sees it, and insert one row at a time with a per-row position
//! trigger. Here a commit encodes each event straight to JSON text once, the
//! metadata (the same for every event of a commit) once, and writes the
//! whole commit as one multi-row INSERT that also assigns the global
//! positions under the database's write lock (SQLite: its single writer and
//! the rowid; PostgreSQL: a transaction-scoped advisory lock), so positions
//! are gapless and in commit order. The (aggregate_type, aggregate_id,
//! sequence) key is unique, so a duplicate sequence is the
//! optimistic-concurrency conflict cqrs-es expects.

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::Arc;

use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventEnvelope, EventStore};
use sqlx::Row;

use crate::checkpoint::Checkpointer;
use crate::event::Event;
use crate::store::{Db, StoreError, decode_event};

/// Events per SQLite INSERT statement: 7 parameters each, under SQLite's
/// limit of 32,766.
const CHUNK: usize = 1_000;

/// The lock every appender of a PostgreSQL log takes (also in the trigger).
pub(crate) const APPEND_LOCK: i64 = 7064236001;

type Failure<A> = AggregateError<<A as Aggregate>::Error>;

/// The event store of one aggregate type.
pub(crate) struct LogStore<A> {
    db: Db,
    checkpointer: Option<Arc<Checkpointer>>,
    aggregate: PhantomData<fn() -> A>,
}

impl<A> LogStore<A> {
    pub(crate) fn new(db: &Db, checkpointer: Option<Arc<Checkpointer>>) -> Self {
        Self {
            db: db.clone(),
            checkpointer,
            aggregate: PhantomData,
        }
    }
}

/// An aggregate loaded from its events, and the last sequence it has seen.
pub(crate) struct StreamContext<A> {
    aggregate_id: String,
    aggregate: A,
    sequence: usize,
}

impl<A: Aggregate> AggregateContext<A> for StreamContext<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.aggregate
    }
}

fn conflict_or<A: Aggregate>(e: sqlx::Error) -> Failure<A> {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => AggregateError::AggregateConflict,
        _ => AggregateError::DatabaseConnectionError(Box::new(e)),
    }
}

fn unreadable<A: Aggregate>(e: StoreError) -> Failure<A> {
    AggregateError::DeserializationError(Box::new(e))
}

/// One stored event of a stream, as read back for cqrs-es.
struct StreamRow {
    position: i64,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: String,
    metadata: Option<String>,
}

impl StreamRow {
    fn from_row<R: Row>(row: &R, with_metadata: bool) -> Result<Self, sqlx::Error>
    where
        for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        usize: sqlx::ColumnIndex<R>,
    {
        Ok(Self {
            position: row.try_get(0)?,
            sequence: row.try_get(1)?,
            event_type: row.try_get(2)?,
            event_version: row.try_get(3)?,
            payload: row.try_get(4)?,
            metadata: if with_metadata {
                Some(row.try_get(5)?)
            } else {
                None
            },
        })
    }
}

impl<A: Aggregate<Event = Event>> LogStore<A> {
    /// The stream's events in sequence order (with their metadata when asked).
    async fn stream(
        &self,
        aggregate_id: &str,
        with_metadata: bool,
    ) -> Result<Vec<StreamRow>, Failure<A>> {
        let metadata = if with_metadata { ", metadata" } else { "" };
        let rows = match &self.db {
            Db::Sqlite(pool) => sqlx::query(&format!(
                "SELECT position, sequence, event_type, event_version, payload{metadata}
                   FROM events WHERE aggregate_type = ?1 AND aggregate_id = ?2 ORDER BY sequence"
            ))
            .bind(A::TYPE)
            .bind(aggregate_id)
            .fetch_all(pool)
            .await
            .map_err(conflict_or::<A>)?
            .iter()
            .map(|r| StreamRow::from_row(r, with_metadata))
            .collect::<Result<_, _>>(),
            Db::Postgres(pool) => sqlx::query(&format!(
                "SELECT position, sequence, event_type, event_version, payload::text{metadata}{}
                   FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
                if with_metadata { "::text" } else { "" }
            ))
            .bind(A::TYPE)
            .bind(aggregate_id)
            .fetch_all(pool)
            .await
            .map_err(conflict_or::<A>)?
            .iter()
            .map(|r| StreamRow::from_row(r, with_metadata))
            .collect::<Result<_, _>>(),
        };
        rows.map_err(conflict_or::<A>)
    }
}

impl<A: Aggregate<Event = Event>> EventStore<A> for LogStore<A> {
    type AC = StreamContext<A>;

    async fn load_events(&self, aggregate_id: &str) -> Result<Vec<EventEnvelope<A>>, Failure<A>> {
        self.stream(aggregate_id, true)
            .await?
            .into_iter()
            .map(|row| {
                let payload = decode_event(
                    row.position,
                    &row.event_type,
                    &row.event_version,
                    &row.payload,
                )
                .map_err(unreadable::<A>)?;
                let metadata = row.metadata.as_deref().unwrap_or("{}");
                let metadata: HashMap<String, String> = serde_json::from_str(metadata)
                    .map_err(|e| AggregateError::DeserializationError(Box::new(e)))?;
                Ok(EventEnvelope {
                    aggregate_id: aggregate_id.to_string(),
                    sequence: row.sequence as usize,
                    payload,
                    metadata,
                })
            })
            .collect()
    }

    async fn load_aggregate(&self, aggregate_id: &str) -> Result<StreamContext<A>, Failure<A>> {
        let mut context = StreamContext {
            aggregate_id: aggregate_id.to_string(),
            aggregate: A::default(),
            sequence: 0,
        };
        for row in self.stream(aggregate_id, false).await? {
            let event = decode_event(
                row.position,
                &row.event_type,
                &row.event_version,
                &row.payload,
            )
            .map_err(unreadable::<A>)?;
            context.aggregate.apply(event);
            context.sequence = row.sequence as usize;
        }
        Ok(context)
    }

    async fn commit(
        &self,
        events: Vec<Event>,
        context: StreamContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, Failure<A>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let encode_failed = |e: serde_json::Error| AggregateError::UnexpectedError(Box::new(e));
        // Sorted keys: the stored text does not depend on hash order.
        let sorted: BTreeMap<&String, &String> = metadata.iter().collect();
        let encoded_metadata = serde_json::to_string(&sorted).map_err(encode_failed)?;
        let rows = events
            .iter()
            .zip(context.sequence + 1..)
            .map(|(event, sequence)| {
                Ok(NewRow {
                    sequence: sequence as i64,
                    event_type: event.event_type(),
                    event_version: Event::current_version(event.event_type()).unwrap_or("1"),
                    payload: serde_json::to_string(event)?,
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(encode_failed)?;
        let commit = Commit {
            aggregate_type: A::TYPE,
            aggregate_id: &context.aggregate_id,
            metadata: &encoded_metadata,
            rows: &rows,
        };
        match &self.db {
            Db::Sqlite(pool) => commit.to_sqlite(pool).await,
            Db::Postgres(pool) => commit.to_postgres(pool).await,
        }
        .map_err(conflict_or::<A>)?;
        if let Some(checkpointer) = &self.checkpointer {
            let payloads: usize = rows.iter().map(|r| r.payload.len()).sum();
            checkpointer.wrote(payloads + rows.len() * encoded_metadata.len());
        }
        Ok(events
            .into_iter()
            .zip(context.sequence + 1..)
            .map(|(payload, sequence)| EventEnvelope {
                aggregate_id: context.aggregate_id.clone(),
                sequence,
                payload,
                metadata: metadata.clone(),
            })
            .collect())
    }
}

/// One event of a commit, encoded.
struct NewRow {
    sequence: i64,
    event_type: &'static str,
    event_version: &'static str,
    payload: String,
}

/// Everything one commit writes: events of one stream, with one metadata.
struct Commit<'a> {
    aggregate_type: &'static str,
    aggregate_id: &'a str,
    metadata: &'a str,
    rows: &'a [NewRow],
}

impl Commit<'_> {
    /// One transaction; positions are the rowids SQLite assigns, each one
    /// past the largest, under the write lock that `BEGIN IMMEDIATE` takes.
    async fn to_sqlite(&self, pool: &sqlx::SqlitePool) -> Result<(), sqlx::Error> {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        for chunk in self.rows.chunks(CHUNK) {
            // Anonymous `?` only: SQLite looks a numbered parameter's name up
            // in a list, which makes binding a long statement quadratic.
            let sql = format!(
                "INSERT INTO events (aggregate_type, aggregate_id, metadata, sequence, event_type, event_version, payload) VALUES {}",
                vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(&sql);
            for row in chunk {
                q = q
                    .bind(self.aggregate_type)
                    .bind(self.aggregate_id)
                    .bind(self.metadata)
                    .bind(row.sequence)
                    .bind(row.event_type)
                    .bind(row.event_version)
                    .bind(&row.payload);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// One transaction under the append lock: positions follow the head.
    async fn to_postgres(&self, pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await?;
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&mut *tx)
            .await?;
        // Arrays instead of a parameter per field: one statement text (and
        // one prepared statement) whatever the commit's size.
        let sequences: Vec<i64> = self.rows.iter().map(|r| r.sequence).collect();
        let event_types: Vec<&str> = self.rows.iter().map(|r| r.event_type).collect();
        let event_versions: Vec<&str> = self.rows.iter().map(|r| r.event_version).collect();
        let payloads: Vec<&str> = self.rows.iter().map(|r| r.payload.as_str()).collect();
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, metadata, position, sequence, event_type, event_version, payload)
             SELECT $1, $2, $3::json, $4 + n, sequence, event_type, event_version, payload::json
               FROM UNNEST($5::bigint[], $6::text[], $7::text[], $8::text[])
                    WITH ORDINALITY AS e(sequence, event_type, event_version, payload, n)
              ORDER BY n",
        )
        .bind(self.aggregate_type)
        .bind(self.aggregate_id)
        .bind(self.metadata)
        .bind(head)
        .bind(&sequences)
        .bind(&event_types)
        .bind(&event_versions)
        .bind(&payloads)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
}
