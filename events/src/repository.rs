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
//!
//! Each store keeps the aggregates it has folded in memory ([`Folded`]),
//! with the last sequence folded into each, so validating a command does not
//! cost more as its stream grows: a load reads only the events appended
//! since — or nothing, while the kept state is known to be current. And a
//! commit hands its events, decoded, to the store's [`Tail`], so that a
//! reader following the log in this process need not read them back.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::ffi::c_int;

use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventEnvelope, EventStore};
use sqlx::Row;
use sqlx::sqlite::LockedSqliteHandle;

use crate::checkpoint::Checkpointer;
use crate::event::Event;
use crate::read::{RawRow, decode_in_order};
use crate::sqlite_raw::{self, Refused, Statement};
use crate::store::{Db, StoreError, decode_event, either_pool};
use crate::tail::Tail;

/// Events per SQLite INSERT statement: 7 parameters each, under SQLite's
/// limit of 32,766.
const CHUNK: usize = 1_000;

/// The lock every appender of a PostgreSQL log takes (also in the trigger).
pub(crate) const APPEND_LOCK: i64 = 7064236001;

/// Aggregates of one type kept folded in memory, at most: past it the least
/// recently used is dropped (and folded again from the log if it is needed).
const FOLDED_CAP: usize = 1_024;

type Failure<A> = AggregateError<<A as Aggregate>::Error>;

/// The event store of one aggregate type.
pub(crate) struct LogStore<A> {
    db: Db,
    checkpointer: Option<Arc<Checkpointer>>,
    folded: Arc<Folded<A>>,
    /// The store's recent commits (shared by every aggregate type).
    tail: Arc<Tail>,
}

impl<A> LogStore<A> {
    pub(crate) fn new(
        db: &Db,
        checkpointer: Option<Arc<Checkpointer>>,
        folded: Arc<Folded<A>>,
        tail: Arc<Tail>,
    ) -> Self {
        Self {
            db: db.clone(),
            checkpointer,
            folded,
            tail,
        }
    }
}

/// Whether an aggregate can still take commands: one that cannot (a stream
/// that has ended) is not kept in memory.
pub(crate) trait Lifecycle {
    fn ended(&self) -> bool;
}

/// The aggregates this process has folded, keyed by id, each with the last
/// sequence folded into it (least recently used dropped past
/// [`FOLDED_CAP`]; an ended stream dropped at once).
///
/// Correct with other writers of the same log: history is never changed
/// (triggers refuse it), so a state folded up to sequence N stays the fold
/// of 1..=N; every writer commits at the sequence after the last it folded,
/// so a stream's sequences have no holes, and a command validated against a
/// state that someone has since moved on cannot commit — its first sequence
/// is taken. That conflict is what makes `Store` load again and retry. So a
/// state this process committed itself is *trusted*: used without asking
/// the log, until a conflict or a refused command says it may be stale;
/// then the next load reads the events after it (only those). A stream
/// not kept at all is first taken to be new (empty), on the same terms:
/// one that exists shows itself by the conflict or the refusal.
pub(crate) struct Folded<A> {
    entries: Mutex<FoldedEntries<A>>,
    /// Events read from the log to load aggregates (for tests).
    rows_read: AtomicU64,
}

struct FoldedEntries<A> {
    by_id: HashMap<String, Entry<A>>,
    /// Incremented on every use; an entry's `used` is its last.
    clock: u64,
}

struct Entry<A> {
    aggregate: A,
    sequence: usize,
    used: u64,
    /// Believed current: a load need not read the log (see [`Folded`]).
    trusted: bool,
}

impl<A> Default for Folded<A> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(FoldedEntries {
                by_id: HashMap::new(),
                clock: 0,
            }),
            rows_read: AtomicU64::new(0),
        }
    }
}

impl<A: Clone + Lifecycle> Folded<A> {
    /// A poisoned lock only means another thread panicked mid-update of a
    /// plain map whose entries are each whole: still usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, FoldedEntries<A>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the folded state of `id`, its last sequence, and whether
    /// it is trusted to be current.
    fn get(&self, id: &str) -> Option<(A, usize, bool)> {
        let mut entries = self.lock();
        entries.clock += 1;
        let clock = entries.clock;
        let entry = entries.by_id.get_mut(id)?;
        entry.used = clock;
        Some((entry.aggregate.clone(), entry.sequence, entry.trusted))
    }

    /// Keeps `aggregate`, folded up to `sequence` and current as far as
    /// this process knows, unless what is kept is already as recent (a
    /// concurrent command of this process may have stored a later state
    /// first). An ended aggregate is dropped instead.
    fn put(&self, id: &str, aggregate: A, sequence: usize) {
        let mut entries = self.lock();
        if aggregate.ended() {
            entries.by_id.remove(id);
            return;
        }
        entries.clock += 1;
        let used = entries.clock;
        match entries.by_id.get_mut(id) {
            Some(entry) if entry.sequence > sequence => entry.used = used,
            // The same fold: current again.
            Some(entry) if entry.sequence == sequence => {
                entry.used = used;
                entry.trusted = true;
            }
            Some(entry) => {
                *entry = Entry {
                    aggregate,
                    sequence,
                    used,
                    trusted: true,
                }
            }
            None => {
                if entries.by_id.len() >= FOLDED_CAP {
                    let oldest = entries
                        .by_id
                        .iter()
                        .min_by_key(|(_, e)| e.used)
                        .map(|(id, _)| id.clone());
                    if let Some(oldest) = oldest {
                        entries.by_id.remove(&oldest);
                    }
                }
                entries.by_id.insert(
                    id.to_string(),
                    Entry {
                        aggregate,
                        sequence,
                        used,
                        trusted: true,
                    },
                );
            }
        }
    }

    /// Marks what is kept for `id` as possibly stale, so that the next load
    /// reads the log after it (all of it when nothing is kept).
    pub(crate) fn distrust(&self, id: &str)
    where
        A: Default,
    {
        let mut entries = self.lock();
        if let Some(entry) = entries.by_id.get_mut(id) {
            entry.trusted = false;
            return;
        }
        let used = entries.clock;
        entries.by_id.insert(
            id.to_string(),
            Entry {
                aggregate: A::default(),
                sequence: 0,
                used,
                trusted: false,
            },
        );
    }

    /// How many aggregates are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Events read from the log so far to load aggregates of this type.
    #[cfg(test)]
    pub(crate) fn rows_read(&self) -> u64 {
        self.rows_read.load(Ordering::Relaxed)
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
    /// The row's event, decoded as a read of the log decodes it.
    fn event<A: Aggregate>(&self) -> Result<Event, Failure<A>> {
        decode_event(
            self.position,
            &self.event_type,
            &self.event_version,
            &self.payload,
        )
        .map_err(unreadable::<A>)
    }

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
    /// The committed rows, decoded exactly as a read of the log would
    /// decode them, for the tail. One that cannot be decoded (it then
    /// cannot be read back either) leaves the commit out: readers read it.
    fn to_tail(&self, first_position: i64, aggregate_id: &str, rows: &[NewRow], metadata: &str) {
        let rows: Vec<RawRow<'_>> = rows
            .iter()
            .zip(first_position..)
            .map(|(row, position)| RawRow {
                position,
                aggregate_type: A::TYPE,
                aggregate_id,
                sequence: row.sequence,
                event_type: row.event_type,
                event_version: row.event_version,
                payload: &row.payload,
                metadata,
            })
            .collect();
        if let Ok(recorded) = decode_in_order(&rows) {
            self.tail.committed(recorded);
        }
    }

    /// The stream's events after sequence `after`, in sequence order (with
    /// their metadata when asked).
    async fn stream(
        &self,
        aggregate_id: &str,
        after: usize,
        with_metadata: bool,
    ) -> Result<Vec<StreamRow>, Failure<A>> {
        // CAST: PostgreSQL's json columns as text, a no-op on SQLite's text.
        let metadata = if with_metadata {
            ", CAST(metadata AS TEXT)"
        } else {
            ""
        };
        let sql = format!(
            "SELECT position, sequence, event_type, event_version, CAST(payload AS TEXT){metadata}
               FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3
              ORDER BY sequence"
        );
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = either_pool!(&self.db, |pool| sqlx::query(&sql)
            .bind(A::TYPE)
            .bind(aggregate_id)
            .bind(after)
            .fetch_all(pool)
            .await
            .map_err(conflict_or::<A>)?
            .iter()
            .map(|r| StreamRow::from_row(r, with_metadata))
            .collect::<Result<_, _>>());
        let rows: Vec<StreamRow> = rows.map_err(conflict_or::<A>)?;
        self.folded
            .rows_read
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        Ok(rows)
    }
}

impl<A: Aggregate<Event = Event> + Clone + Lifecycle> EventStore<A> for LogStore<A> {
    type AC = StreamContext<A>;

    async fn load_events(&self, aggregate_id: &str) -> Result<Vec<EventEnvelope<A>>, Failure<A>> {
        self.stream(aggregate_id, 0, true)
            .await?
            .into_iter()
            .map(|row| {
                let payload = row.event::<A>()?;
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

    /// The folded state kept in memory: as it is while trusted (a new,
    /// empty stream when none is kept), else brought up to date with the
    /// events appended since, by anyone. See [`Folded`].
    async fn load_aggregate(&self, aggregate_id: &str) -> Result<StreamContext<A>, Failure<A>> {
        let (aggregate, sequence, trusted) = self
            .folded
            .get(aggregate_id)
            .unwrap_or_else(|| (A::default(), 0, true));
        let mut context = StreamContext {
            aggregate_id: aggregate_id.to_string(),
            aggregate,
            sequence,
        };
        if trusted {
            return Ok(context);
        }
        let rows = self.stream(aggregate_id, sequence, false).await?;
        for row in rows {
            let event = row.event::<A>()?;
            context.aggregate.apply(event);
            context.sequence = row.sequence as usize;
        }
        // Current now, as far as anyone can tell: a stale state is caught
        // by the commit's conflict.
        self.folded
            .put(aggregate_id, context.aggregate.clone(), context.sequence);
        Ok(context)
    }

    /// Writes the commit; once it is in the log, keeps the aggregate with
    /// the events applied (cqrs-es' `EventSink::write` applied each one as
    /// the command emitted it), and hands the events to the tail. A
    /// conflict marks the kept state stale.
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
        let written = match &self.db {
            Db::Sqlite(pool) => commit.to_sqlite(pool).await,
            Db::Postgres(pool) => commit.to_postgres(pool).await,
        };
        let failure = match written {
            Ok(first) => Ok(first),
            Err(CommitError::Conflict) => Err(AggregateError::AggregateConflict),
            Err(CommitError::Sqlx(e)) => Err(conflict_or::<A>(e)),
            Err(CommitError::Store(e)) => Err(AggregateError::DatabaseConnectionError(Box::new(e))),
        };
        let first_position = match failure {
            Ok(first) => first,
            Err(AggregateError::AggregateConflict) => {
                self.folded.distrust(&context.aggregate_id);
                return Err(AggregateError::AggregateConflict);
            }
            Err(e) => return Err(e),
        };
        if let Some(checkpointer) = &self.checkpointer {
            let payloads: usize = rows.iter().map(|r| r.payload.len()).sum();
            checkpointer.wrote(payloads + rows.len() * encoded_metadata.len());
        }
        // Kept as it is, not copied: the command is done with it.
        let StreamContext {
            aggregate_id,
            aggregate,
            sequence,
        } = context;
        self.folded
            .put(&aggregate_id, aggregate, sequence + events.len());
        if self.tail.wanted() {
            self.to_tail(first_position, &aggregate_id, &rows, &encoded_metadata);
        }
        Ok(events
            .into_iter()
            .zip(sequence + 1..)
            .map(|(payload, sequence)| EventEnvelope {
                aggregate_id: aggregate_id.clone(),
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

/// The INSERT of `rows` events. Anonymous `?` only: SQLite looks a
/// numbered parameter's name up in a list, which makes binding a long
/// statement quadratic.
fn insert_sql(rows: usize) -> String {
    format!(
        "INSERT INTO events (aggregate_type, aggregate_id, metadata, sequence, event_type, event_version, payload) VALUES {}",
        vec!["(?, ?, ?, ?, ?, ?, ?)"; rows].join(", ")
    )
}

/// Why a commit did not happen.
#[derive(Debug, thiserror::Error)]
enum CommitError {
    #[error("the sequence is taken")]
    Conflict,
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
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
    /// Returns the first event's position.
    ///
    /// The rows are inserted on this thread with the connection's handle
    /// lent by sqlx's worker (one hand-over, not one per statement); see
    /// [`sqlite_raw::write`] for how the write lock is taken.
    async fn to_sqlite(&self, pool: &sqlx::SqlitePool) -> Result<i64, CommitError> {
        let mut conn = pool.acquire().await?;
        match sqlite_raw::write(&mut conn, |handle| self.sqlite_insert(handle)).await? {
            Ok(first) => Ok(first),
            Err((code, _)) if sqlite_raw::is_unique_violation(code) => Err(CommitError::Conflict),
            Err((_, e)) => Err(CommitError::Store(e)),
        }
    }

    /// The rows, inserted in the open transaction; the first position, or
    /// the failure with SQLite's extended result code.
    fn sqlite_insert(&self, handle: &mut LockedSqliteHandle<'_>) -> Result<i64, Refused> {
        let mut first = None;
        for chunk in self.rows.chunks(CHUNK) {
            let sql = insert_sql(chunk.len());
            let mut insert = Statement::prepare(handle, &sql).map_err(|e| (0, e))?;
            for (i, row) in chunk.iter().enumerate() {
                let at = (i * 7) as c_int;
                let texts = [
                    (1, self.aggregate_type),
                    (2, self.aggregate_id),
                    (3, self.metadata),
                    (5, row.event_type),
                    (6, row.event_version),
                    (7, row.payload.as_str()),
                ];
                for (column, text) in texts {
                    insert.bind_text(at + column, text).map_err(|e| (0, e))?;
                }
                insert.bind_i64(at + 4, row.sequence).map_err(|e| (0, e))?;
            }
            if let Err(e) = insert.step() {
                return Err((insert.error_code(), e));
            }
            drop(insert);
            // The rows of one statement are numbered consecutively: each
            // is one past the largest, under the write lock.
            first.get_or_insert(sqlite_raw::last_insert_rowid(handle) - chunk.len() as i64 + 1);
        }
        Ok(first.unwrap_or_default())
    }

    /// One transaction under the append lock: positions follow the head.
    /// Returns the first event's position.
    async fn to_postgres(&self, pool: &sqlx::PgPool) -> Result<i64, CommitError> {
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
        tx.commit().await?;
        Ok(head + 1)
    }
}

#[cfg(test)]
mod tests {
    use crate::event::*;
    use crate::metadata::Metadata;
    use crate::store::{Store, StreamType};
    use crate::testing::sqlite_url;

    fn attempt(run: &str, i: u32) -> Event {
        AttemptStarted {
            run_id: run.into(),
            attempt_id: format!("{run}/a{i}"),
            generation: i,
            index: 0,
            parent: "p".into(),
            donor: None,
            selection: "dgm".into(),
            weights: Default::default(),
            seed: u64::from(i),
        }
        .into()
    }

    fn started(run: &str) -> Event {
        RunStarted {
            run_id: run.into(),
            agent: "a".into(),
            suite: "s".into(),
            config: serde_json::json!({}),
        }
        .into()
    }

    /// Appending to a long stream reads nothing while this process wrote
    /// all of it, and only the other writer's events when there are some.
    #[tokio::test]
    async fn an_append_reads_only_what_it_has_not_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = sqlite_url(dir.path());
        let mine = Store::open(&url).await.expect("open");
        let other = Store::open(&url).await.expect("open");
        let meta = Metadata::new("test");
        mine.append(StreamType::Run, "r", vec![started("r")], &meta)
            .await
            .expect("start");
        for i in 0..300 {
            mine.append(StreamType::Run, "r", vec![attempt("r", i)], &meta)
                .await
                .expect("append");
        }
        assert_eq!(
            mine.stream_rows_read(),
            0,
            "its own writes are not read back"
        );
        for i in 300..303 {
            other
                .append(StreamType::Run, "r", vec![attempt("r", i)], &meta)
                .await
                .expect("other append");
        }
        assert_eq!(
            other.stream_rows_read(),
            301,
            "a newcomer folds it all once"
        );
        mine.append(StreamType::Run, "r", vec![attempt("r", 303)], &meta)
            .await
            .expect("append after the other writer");
        assert_eq!(
            mine.stream_rows_read(),
            3,
            "only the other writer's three events"
        );
        let sequences: Vec<u64> = mine
            .read_all(None)
            .await
            .expect("read")
            .iter()
            .map(|r| r.sequence)
            .collect();
        assert_eq!(
            sequences,
            (1..=305).collect::<Vec<u64>>(),
            "no hole, no repeat"
        );
    }

    /// Ended streams are not kept; the rest at most up to the cap.
    #[tokio::test]
    async fn memory_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&sqlite_url(dir.path())).await.expect("open");
        let meta = Metadata::new("test");
        for i in 0..super::FOLDED_CAP + 10 {
            let id = format!("r{i}");
            store
                .append(StreamType::Run, &id, vec![started(&id)], &meta)
                .await
                .expect("start");
        }
        assert_eq!(store.folded_streams().0, super::FOLDED_CAP);
        for i in 0..20 {
            let id = format!("e{i}");
            store
                .append(
                    StreamType::Evaluation,
                    &id,
                    vec![
                        BenchmarkStarted {
                            evaluation_id: id.clone(),
                            agent: None,
                            version: None,
                            suite: "s".into(),
                            stage: 1,
                            split: "train".into(),
                            tasks: 0,
                        }
                        .into(),
                        BenchmarkCompleted {
                            evaluation_id: id.clone(),
                            score: None,
                            passed_gate: false,
                            metrics: Default::default(),
                        }
                        .into(),
                    ],
                    &meta,
                )
                .await
                .expect("evaluation");
        }
        assert_eq!(store.folded_streams().1, 0, "an ended stream is not kept");
        // The oldest run was dropped: it is folded again, and still refuses
        // a second start.
        let again = store
            .append(StreamType::Run, "r0", vec![started("r0")], &meta)
            .await;
        assert!(again.is_err(), "{again:?}");
    }
}
