//! The event log: one append-only table in SQLite or PostgreSQL, written
//! through cqrs-es aggregates and read in global position order.
//!
//! cqrs-es orders events per aggregate only; the `position` column (filled
//! by a trigger, see `migrations/`) gives the global, gapless, commit-ordered
//! sequence that projections tail.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::{Aggregate, AggregateError, CqrsFramework};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};

use crate::aggregates::*;
use crate::checkpoint::{BACKSTOP_PAGES, Checkpointer};
use crate::event::Event;
use crate::metadata::Metadata;
use crate::repository::LogStore;
use crate::sqlite_raw::Statement;
use crate::upcast::upcast;

/// Where the log lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl StoreUrl {
    /// The default: `.dgm/dgm.db` under the current directory.
    pub fn default_sqlite() -> Self {
        StoreUrl::Sqlite(PathBuf::from(".dgm").join("dgm.db"))
    }

    /// The URL with any password hidden, for messages.
    pub fn redacted(&self) -> String {
        match self {
            StoreUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            StoreUrl::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    let userinfo = &url[scheme + 3..at];
                    let user = userinfo.split(':').next().unwrap_or("");
                    format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
                }
                _ => url.clone(),
            },
        }
    }
}

impl FromStr for StoreUrl {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, StoreError> {
        if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::BadUrl(s.to_string()));
            }
            Ok(StoreUrl::Sqlite(PathBuf::from(path)))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(StoreUrl::Postgres(s.to_string()))
        } else {
            Err(StoreError::BadUrl(s.to_string()))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store URL `{0}` is not sqlite://PATH or postgres://…")]
    BadUrl(String),
    #[error("cannot open {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error(
        "the database schema is version {found}, newer than this dgm understands ({known}); upgrade dgm"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("database error: {0}")]
    Database(String),
    #[error("event at position {position} cannot be read: {message}")]
    Corrupt { position: u64, message: String },
    #[error("blob {0} is missing from the store")]
    MissingBlob(String),
    #[error("{0}")]
    Command(#[from] CommandError),
    #[error("gave up after {0} conflicting concurrent writes")]
    Contended(u32),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// An event as read back from the global log.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub position: u64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: u64,
    pub event: Event,
    pub metadata: Metadata,
}

#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One cqrs-es framework per aggregate over our own event store (no
/// snapshots: an aggregate is always folded from its events).
struct Framework<A: Aggregate<Event = Event>>(CqrsFramework<A, LogStore<A>>);

impl<A: Aggregate<Event = Event, Error = CommandError, Services = ()>> Framework<A>
where
    A::Command: Clone,
{
    fn new(db: &Db, checkpointer: &Option<Arc<Checkpointer>>) -> Self {
        Framework(CqrsFramework::new(
            LogStore::new(db, checkpointer.clone()),
            vec![],
            (),
        ))
    }

    /// Executes, reloading and retrying when another writer got there first.
    async fn execute(
        &self,
        id: &str,
        command: A::Command,
        meta: &Metadata,
    ) -> Result<(), StoreError> {
        const MAX_TRIES: u32 = 200;
        for attempt in 0..MAX_TRIES {
            let map: HashMap<String, String> = meta.to_map();
            let result = self.0.execute_with_metadata(id, command.clone(), map).await;
            match result {
                Ok(()) => return Ok(()),
                Err(AggregateError::AggregateConflict) => {
                    let jitter = (std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.subsec_nanos())
                        .unwrap_or(0)
                        % 1000) as u64;
                    let base = 1u64 << attempt.min(5);
                    tokio::time::sleep(Duration::from_micros(base * 200 + jitter)).await;
                }
                Err(AggregateError::UserError(CommandError::UnknownAgent(_))) => {
                    return Err(CommandError::UnknownAgent(id.to_string()).into());
                }
                Err(AggregateError::UserError(e)) => return Err(e.into()),
                Err(other) => return Err(StoreError::Database(other.to_string())),
            }
        }
        Err(StoreError::Contended(MAX_TRIES))
    }
}

/// The event log and blob store of one database.
pub struct Store {
    pub(crate) db: Db,
    /// SQLite only: what this process commits, for background checkpoints.
    pub(crate) checkpointer: Option<Arc<Checkpointer>>,
    url: StoreUrl,
    agents: Framework<Agent>,
    runs: Framework<Run>,
    evaluations: Framework<Evaluation>,
    strategies: Framework<Strategy>,
    sandbox: Framework<SandboxExecution>,
}

/// Which append-only stream an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamType {
    Run,
    Evaluation,
    Strategy,
    SandboxExecution,
}

impl Store {
    /// Notes `bytes` committed (for the background checkpoints of SQLite).
    pub(crate) fn wrote(&self, bytes: usize) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.wrote(bytes);
        }
    }

    /// Opens (creating a SQLite file on first use) and migrates.
    pub async fn open(url: &StoreUrl) -> Result<Self, StoreError> {
        let unreachable = |message: String| StoreError::Unreachable {
            url: url.redacted(),
            message,
        };
        let (db, checkpointer) = match url {
            StoreUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| unreachable(e.to_string()))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(60))
                    // Checkpoints run in the background (see `checkpoint`);
                    // a committing connection only checkpoints past this.
                    .pragma("wal_autocheckpoint", BACKSTOP_PAGES.to_string());
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(60))
                    .connect_with(options.clone())
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                let checkpointer = Checkpointer::start(&options)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                (Db::Sqlite(pool), Some(Arc::new(checkpointer)))
            }
            StoreUrl::Postgres(raw) => {
                let options =
                    PgConnectOptions::from_str(raw).map_err(|e| unreachable(e.to_string()))?;
                // One direct connection first: the pool would only say "timed out".
                let probe = tokio::time::timeout(
                    Duration::from_secs(10),
                    sqlx::ConnectOptions::connect(&options),
                )
                .await
                .map_err(|_| unreachable("no answer within 10 s".into()))?
                .map_err(|e| unreachable(e.to_string()))?;
                drop(probe);
                let pool = PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                (Db::Postgres(pool), None)
            }
        };
        crate::migrate::run(&db).await?;
        Ok(Self {
            agents: Framework::new(&db, &checkpointer),
            runs: Framework::new(&db, &checkpointer),
            evaluations: Framework::new(&db, &checkpointer),
            strategies: Framework::new(&db, &checkpointer),
            sandbox: Framework::new(&db, &checkpointer),
            db,
            checkpointer,
            url: url.clone(),
        })
    }

    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    /// Runs a command against agent `agent`.
    pub async fn agent(
        &self,
        agent: &str,
        command: AgentCommand,
        meta: &Metadata,
    ) -> Result<(), StoreError> {
        self.agents.execute(agent, command, meta).await
    }

    /// Appends `events` to stream `id` of `stream`, atomically.
    pub async fn append(
        &self,
        stream: StreamType,
        id: &str,
        events: Vec<Event>,
        meta: &Metadata,
    ) -> Result<(), StoreError> {
        match stream {
            StreamType::Run => self.runs.execute(id, events, meta).await,
            StreamType::Evaluation => self.evaluations.execute(id, events, meta).await,
            StreamType::Strategy => self.strategies.execute(id, events, meta).await,
            StreamType::SandboxExecution => self.sandbox.execute(id, events, meta).await,
        }
    }

    /// The position of the last event (0 when the log is empty).
    pub async fn head(&self) -> Result<u64, StoreError> {
        let head: Option<i64> = match &self.db {
            Db::Sqlite(pool) => {
                sqlx::query_scalar("SELECT MAX(position) FROM events")
                    .fetch_one(pool)
                    .await?
            }
            Db::Postgres(pool) => {
                sqlx::query_scalar("SELECT MAX(position) FROM events")
                    .fetch_one(pool)
                    .await?
            }
        };
        Ok(head.unwrap_or(0) as u64)
    }

    /// Events with `after < position <= up_to`, in position order, at most `limit`.
    pub async fn read(
        &self,
        after: u64,
        up_to: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Recorded>, StoreError> {
        let up_to = up_to.unwrap_or(i64::MAX as u64).min(i64::MAX as u64) as i64;
        match &self.db {
            Db::Sqlite(pool) => {
                // Directly, not row by row through sqlx: see `sqlite_raw`.
                let mut conn = pool.acquire().await?;
                let mut handle = conn.lock_handle().await?;
                let mut page = Statement::prepare(
                    &mut handle,
                    "SELECT position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
                       FROM events WHERE position > ? AND position <= ? ORDER BY position LIMIT ?",
                )?;
                page.bind_i64(1, after as i64)?;
                page.bind_i64(2, up_to)?;
                page.bind_i64(3, i64::from(limit))?;
                // The text of every row, back to back, so that decoding can
                // happen after the statement is done (and on more threads).
                let mut text = String::new();
                let mut rows = Vec::new();
                while page.step()? {
                    let mut fields = [(0, 0); 6];
                    for (field, column) in fields.iter_mut().zip([1, 2, 4, 5, 6, 7]) {
                        let start = text.len();
                        text.push_str(page.column_str(column)?);
                        *field = (start, text.len());
                    }
                    rows.push((page.column_i64(0), page.column_i64(3), fields));
                }
                drop(page);
                drop(handle);
                drop(conn);
                let rows: Vec<RawRow<'_>> = rows
                    .into_iter()
                    .map(|(position, sequence, fields)| {
                        let [
                            aggregate_type,
                            aggregate_id,
                            event_type,
                            event_version,
                            payload,
                            metadata,
                        ] = fields.map(|(start, end)| &text[start..end]);
                        RawRow {
                            position,
                            aggregate_type,
                            aggregate_id,
                            sequence,
                            event_type,
                            event_version,
                            payload,
                            metadata,
                        }
                    })
                    .collect();
                decode_rows(&rows)
            }
            Db::Postgres(pool) => {
                let found = sqlx::query(
                    "SELECT position, aggregate_type, aggregate_id, sequence, event_type, event_version,
                            payload::text AS payload, metadata::text AS metadata
                       FROM events WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3",
                )
                .bind(after as i64)
                .bind(up_to)
                .bind(limit as i64)
                .fetch_all(pool)
                .await?;
                let rows = found
                    .iter()
                    .map(|row| {
                        Ok(RawRow {
                            position: row.try_get(0)?,
                            aggregate_type: row.try_get(1)?,
                            aggregate_id: row.try_get(2)?,
                            sequence: row.try_get(3)?,
                            event_type: row.try_get(4)?,
                            event_version: row.try_get(5)?,
                            payload: row.try_get(6)?,
                            metadata: row.try_get(7)?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                decode_rows(&rows)
            }
        }
    }

    /// Every event up to `up_to`, paged.
    pub async fn read_all(&self, up_to: Option<u64>) -> Result<Vec<Recorded>, StoreError> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self.read(after, up_to, 10_000).await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            out.extend(page);
        }
        Ok(out)
    }
}

/// One stored event, its text fields borrowed from what the database returned.
struct RawRow<'a> {
    position: i64,
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    sequence: i64,
    event_type: &'a str,
    event_version: &'a str,
    payload: &'a str,
    metadata: &'a str,
}

impl RawRow<'_> {
    /// Decodes the row; `previous` is the row before it, whose metadata (the
    /// same for every event of a commit) is reused when the text is equal.
    fn decode(&self, previous: Option<(&str, &Recorded)>) -> Result<Recorded, StoreError> {
        let position = self.position as u64;
        let corrupt = |message: String| StoreError::Corrupt { position, message };
        let event = decode_event(
            self.position,
            self.event_type,
            self.event_version,
            self.payload,
        )?;
        let metadata = match previous {
            Some((text, recorded)) if text == self.metadata => recorded.metadata.clone(),
            _ => Metadata::decode(self.metadata).map_err(corrupt)?,
        };
        Ok(Recorded {
            position,
            aggregate_type: self.aggregate_type.to_string(),
            aggregate_id: self.aggregate_id.to_string(),
            sequence: self.sequence as u64,
            event,
            metadata,
        })
    }
}

/// Decodes `rows` in order: on several threads when there are many (a
/// rebuild reads the whole log, and decoding is most of its work).
fn decode_rows(rows: &[RawRow<'_>]) -> Result<Vec<Recorded>, StoreError> {
    const ROWS_PER_THREAD: usize = 1_000;
    const MAX_THREADS: usize = 4;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
        .min(rows.len() / ROWS_PER_THREAD);
    if threads < 2 {
        return decode_in_order(rows);
    }
    let part = rows.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let others: Vec<_> = rows
            .chunks(part)
            .skip(1)
            .map(|rows| scope.spawn(move || decode_in_order(rows)))
            .collect();
        let mut decoded = decode_in_order(&rows[..part])?;
        for other in others {
            let part = other
                .join()
                .map_err(|_| StoreError::Database("decoding events panicked".into()))??;
            decoded.extend(part);
        }
        Ok(decoded)
    })
}

fn decode_in_order(rows: &[RawRow<'_>]) -> Result<Vec<Recorded>, StoreError> {
    let mut decoded: Vec<Recorded> = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let previous = i
            .checked_sub(1)
            .and_then(|p| Some((rows[p].metadata, decoded.last()?)));
        decoded.push(row.decode(previous)?);
    }
    Ok(decoded)
}

/// The event stored at `position`, lifted to the current version.
pub(crate) fn decode_event(
    position: i64,
    event_type: &str,
    event_version: &str,
    payload: &str,
) -> Result<Event, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        position: position as u64,
        message,
    };
    let current = Event::current_version(event_type) == Some(event_version);
    // Fast path: a current-version payload decodes straight into the enum.
    let direct = if current {
        serde_json::from_str::<Event>(payload).ok()
    } else {
        None
    };
    let event = match direct {
        Some(event) => event,
        None => {
            let payload: serde_json::Value = serde_json::from_str(payload)
                .map_err(|e| corrupt(format!("payload is not JSON: {e}")))?;
            let payload =
                upcast(event_type, event_version, payload).map_err(|e| corrupt(e.to_string()))?;
            serde_json::from_value(payload)
                .map_err(|e| corrupt(format!("{event_type} payload does not match: {e}")))?
        }
    };
    if event.event_type() != event_type {
        return Err(corrupt(format!(
            "stored as {event_type} but the payload is {}",
            event.event_type()
        )));
    }
    Ok(event)
}
