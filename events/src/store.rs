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
use sqlx::{PgPool, SqlitePool};

use crate::aggregates::*;
use crate::checkpoint::{BACKSTOP_PAGES, Checkpointer};
use crate::event::Event;
use crate::metadata::Metadata;
use crate::repository::{Folded, Lifecycle, LogStore};
use crate::tail::Tail;
// Reading the log lives in `read`; the event store decodes with it too.
pub(crate) use crate::read::decode_event;

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

/// `either_pool!(db, |pool| body)`: `body` run with `pool` bound to `db`'s
/// pool, whichever back end it is. For work whose SQL text and binds are the
/// same on both — `$1`-style parameters, which SQLite reads too — so that it
/// is written once (and compiled once per pool type) instead of once per
/// back end; work that differs by back end matches on [`Db`] itself.
macro_rules! either_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use either_pool;

/// One cqrs-es framework per aggregate over our own event store (no
/// snapshots: an aggregate is folded from its events, and kept folded in
/// memory between commands — see [`Folded`]).
struct Framework<A: Aggregate<Event = Event> + Clone + Lifecycle> {
    cqrs: CqrsFramework<A, LogStore<A>>,
    /// Shared with the event store inside `cqrs`: a refused command marks
    /// its state stale here.
    folded: Arc<Folded<A>>,
}

impl<A: Aggregate<Event = Event, Error = CommandError, Services = ()> + Clone + Lifecycle>
    Framework<A>
where
    A::Command: Clone,
{
    fn new(db: &Db, checkpointer: &Option<Arc<Checkpointer>>, tail: &Arc<Tail>) -> Self {
        let folded = Arc::new(Folded::default());
        Framework {
            cqrs: CqrsFramework::new(
                LogStore::new(db, checkpointer.clone(), folded.clone(), tail.clone()),
                vec![],
                (),
            ),
            folded,
        }
    }

    /// Executes, reloading and retrying when another writer got there first.
    async fn execute(
        &self,
        id: &str,
        command: A::Command,
        meta: &Metadata,
    ) -> Result<(), StoreError> {
        const MAX_TRIES: u32 = 200;
        // A refusal is checked once more against the log itself: the state
        // it was judged on may have been kept in memory, unread.
        let mut rechecked = false;
        for attempt in 0..MAX_TRIES {
            let map: HashMap<String, String> = meta.to_map();
            let result = self
                .cqrs
                .execute_with_metadata(id, command.clone(), map)
                .await;
            match result {
                Ok(()) => return Ok(()),
                // The first conflict may only mean that the kept state was
                // stale: retry at once (the load now reads what is new).
                Err(AggregateError::AggregateConflict) if attempt == 0 => {}
                Err(AggregateError::AggregateConflict) => {
                    let jitter = (std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.subsec_nanos())
                        .unwrap_or(0)
                        % 1000) as u64;
                    let base = 1u64 << attempt.min(5);
                    tokio::time::sleep(Duration::from_micros(base * 200 + jitter)).await;
                }
                // Judged on a state kept in memory (or assumed new), which
                // may be stale: judge once more on what the log says.
                Err(AggregateError::UserError(_)) if !rechecked => {
                    self.folded.distrust(id);
                    rechecked = true;
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
    /// What this store committed lately, for [`Store::recent`].
    tail: Arc<Tail>,
    /// Blobs known to be stored (see `blobs`).
    pub(crate) present: crate::blobs::Present,
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
                    // A SQLite connection lives in this process: no ping
                    // (a hand-over to its worker thread) before each use.
                    .test_before_acquire(false)
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
        let tail = Arc::new(Tail::default());
        Ok(Self {
            agents: Framework::new(&db, &checkpointer, &tail),
            runs: Framework::new(&db, &checkpointer, &tail),
            evaluations: Framework::new(&db, &checkpointer, &tail),
            strategies: Framework::new(&db, &checkpointer, &tail),
            sandbox: Framework::new(&db, &checkpointer, &tail),
            db,
            checkpointer,
            tail,
            present: Default::default(),
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

    /// The events after position `after` when this store committed all of
    /// them (an empty list when it committed nothing after `after`), else
    /// `None`: read the log. Read-your-writes for a reader that follows the
    /// log in memory, without a query: what other processes appended after
    /// this one's last commit shows only once this one commits again (and
    /// then as `None`). The first call only switches the keeping on.
    pub fn recent(&self, after: u64) -> Option<Vec<Recorded>> {
        self.tail.after(after)
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
        let head: Option<i64> = either_pool!(&self.db, |pool| {
            sqlx::query_scalar("SELECT MAX(position) FROM events")
                .fetch_one(pool)
                .await?
        });
        Ok(head.unwrap_or(0) as u64)
    }
}

#[cfg(test)]
impl Store {
    /// Events read from the log so far to load aggregates, of all types.
    pub(crate) fn stream_rows_read(&self) -> u64 {
        self.agents.folded.rows_read()
            + self.runs.folded.rows_read()
            + self.evaluations.folded.rows_read()
            + self.strategies.folded.rows_read()
            + self.sandbox.folded.rows_read()
    }

    /// Run and evaluation streams kept folded in memory.
    pub(crate) fn folded_streams(&self) -> (usize, usize) {
        (self.runs.folded.len(), self.evaluations.folded.len())
    }
}
