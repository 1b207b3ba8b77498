//! The event log: one append-only table in SQLite or PostgreSQL, written
//! through cqrs-es aggregates and read in global position order.
//!
//! cqrs-es orders events per aggregate only; the `position` column (filled
//! by a trigger, see `migrations/`) gives the global, gapless, commit-ordered
//! sequence that projections tail.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, CqrsFramework};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};

use crate::aggregates::*;
use crate::event::Event;
use crate::metadata::Metadata;
use crate::repository::LogRepository;
use crate::upcast::{TableUpcaster, upcast};

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

/// One cqrs-es framework per aggregate, in event-store mode (never the
/// snapshot or aggregate store: they apply events twice), over our own
/// repository.
struct Framework<A: Aggregate>(CqrsFramework<A, PersistedEventStore<LogRepository, A>>);

impl<A: Aggregate<Error = CommandError, Services = ()>> Framework<A>
where
    A::Command: Clone,
{
    fn new(db: &Db) -> Self {
        let store = PersistedEventStore::new_event_store(LogRepository::new(db))
            .with_upcasters(vec![Box::new(TableUpcaster)]);
        Framework(CqrsFramework::new(store, vec![], ()))
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
    /// Opens (creating a SQLite file on first use) and migrates.
    pub async fn open(url: &StoreUrl) -> Result<Self, StoreError> {
        let unreachable = |message: String| StoreError::Unreachable {
            url: url.redacted(),
            message,
        };
        let db = match url {
            StoreUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| unreachable(e.to_string()))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(60));
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(60))
                    .connect_with(options)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                Db::Sqlite(pool)
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
                Db::Postgres(pool)
            }
        };
        crate::migrate::run(&db).await?;
        Ok(Self {
            agents: Framework::new(&db),
            runs: Framework::new(&db),
            evaluations: Framework::new(&db),
            strategies: Framework::new(&db),
            sandbox: Framework::new(&db),
            db,
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
        let rows: Vec<RawRow> = match &self.db {
            Db::Sqlite(pool) => sqlx::query(
                "SELECT position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
                   FROM events WHERE position > ? AND position <= ? ORDER BY position LIMIT ?",
            )
            .bind(after as i64)
            .bind(up_to)
            .bind(limit as i64)
            .fetch_all(pool)
            .await?
            .iter()
            .map(RawRow::from_sqlite)
            .collect::<Result<_, _>>()?,
            Db::Postgres(pool) => sqlx::query(
                "SELECT position, aggregate_type, aggregate_id, sequence, event_type, event_version,
                        payload::text AS payload, metadata::text AS metadata
                   FROM events WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3",
            )
            .bind(after as i64)
            .bind(up_to)
            .bind(limit as i64)
            .fetch_all(pool)
            .await?
            .iter()
            .map(RawRow::from_postgres)
            .collect::<Result<_, _>>()?,
        };
        rows.into_iter().map(RawRow::decode).collect()
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

struct RawRow {
    position: i64,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: String,
    metadata: String,
}

impl RawRow {
    fn from_sqlite(row: &sqlx::sqlite::SqliteRow) -> Result<Self, StoreError> {
        Ok(Self {
            position: row.try_get("position")?,
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
        })
    }

    fn from_postgres(row: &sqlx::postgres::PgRow) -> Result<Self, StoreError> {
        Ok(Self {
            position: row.try_get("position")?,
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
        })
    }

    fn decode(self) -> Result<Recorded, StoreError> {
        let position = self.position as u64;
        let corrupt = |message: String| StoreError::Corrupt { position, message };
        let current = Event::current_version(&self.event_type) == Some(self.event_version.as_str());
        // Fast path: a current-version payload decodes straight into the enum.
        let direct = if current {
            serde_json::from_str::<Event>(&self.payload).ok()
        } else {
            None
        };
        let event = match direct {
            Some(event) => event,
            None => {
                let payload: serde_json::Value = serde_json::from_str(&self.payload)
                    .map_err(|e| corrupt(format!("payload is not JSON: {e}")))?;
                let payload = upcast(&self.event_type, &self.event_version, payload)
                    .map_err(|e| corrupt(e.to_string()))?;
                serde_json::from_value(payload).map_err(|e| {
                    corrupt(format!("{} payload does not match: {e}", self.event_type))
                })?
            }
        };
        if event.event_type() != self.event_type {
            return Err(corrupt(format!(
                "stored as {} but the payload is {}",
                self.event_type,
                event.event_type()
            )));
        }
        let map: HashMap<String, String> = serde_json::from_str(&self.metadata)
            .map_err(|e| corrupt(format!("metadata is not a JSON object of strings: {e}")))?;
        let metadata = Metadata::from_map(&map).map_err(corrupt)?;
        Ok(Recorded {
            position,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence as u64,
            event,
            metadata,
        })
    }
}
