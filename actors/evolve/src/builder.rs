//! The library API: evolve an agent from Rust without the CLI.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let summary = dgm_evolve::Darwin::builder("examples/binpack")
//!     .max_generations(10)
//!     .population_size(5)
//!     .acceptance_threshold(0.01)
//!     .build()
//!     .evolve()
//!     .await?;
//! println!("best {} scored {:?}", summary.best_version, summary.best_score);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dgm_events::agent::read_dir_files;
use dgm_events::blobs::tree_hash;
use dgm_events::*;
use dgm_propose::{MutateConfig, MutateProposer};
use dgm_sandbox::supervisor::{NoopListener, Supervisor};

use crate::config::EvolveConfig;
use crate::error::EvolveError;
use crate::evolution::{Evolution, NoObserver};
use crate::summary::Summary;

/// A newly registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub agent: String,
    pub seed_version: String,
    pub files: usize,
}

/// Registers the agent in `dir` (its `agent.toml` and files) and stores its
/// seed version; an agent of the same name already registered is an error.
pub async fn register(store: &Store, dir: &Path, actor: &str) -> Result<Registered, EvolveError> {
    let manifest = AgentManifest::load(dir).map_err(|e| EvolveError::Config(e.to_string()))?;
    let files = read_dir_files(dir)?;
    if let Some(missing) = manifest
        .evolvable
        .iter()
        .find(|g| !files.keys().any(|p| dgm_events::agent::glob_match(g, p)))
    {
        return Err(EvolveError::Config(format!(
            "{}: `evolvable` entry {missing:?} matches no file",
            dir.join(AgentManifest::FILE).display()
        )));
    }
    let name = manifest.name.clone();
    let hash = store.put_tree(&files).await?;
    debug_assert_eq!(hash, tree_hash(&files));
    let version = hash[..12].to_string();
    store
        .agent(
            &name,
            AgentCommand::Register {
                manifest,
                source: std::fs::canonicalize(dir)
                    .ok()
                    .map(|d| d.display().to_string()),
                seed: VersionCreated {
                    agent: name.clone(),
                    version: version.clone(),
                    parent: None,
                    tree_hash: hash,
                    patch: String::new(),
                    origin: Origin::Seed,
                    summary: format!("seed from {}", dir.display()),
                },
            },
            &Metadata::new(actor),
        )
        .await?;
    Ok(Registered {
        agent: name,
        seed_version: version,
        files: files.len(),
    })
}

/// Registers the agent in `dir` unless an agent of that name exists;
/// returns its name and, when it was new, its seed version.
pub async fn ensure_registered(
    store: &Store,
    dir: &Path,
    actor: &str,
) -> Result<(String, Option<String>), EvolveError> {
    match register(store, dir, actor).await {
        Ok(r) => Ok((r.agent, Some(r.seed_version))),
        Err(EvolveError::Store(StoreError::Command(CommandError::AlreadyRegistered(name)))) => {
            Ok((name, None))
        }
        Err(e) => Err(e),
    }
}

/// The suite a manifest names, resolved against the directory it came from.
pub fn manifest_suite(manifest: &AgentManifest, source: Option<&str>) -> Option<PathBuf> {
    let suite = PathBuf::from(manifest.suite.as_ref()?);
    if suite.is_absolute() {
        return Some(suite);
    }
    Some(Path::new(source?).join(suite))
}

pub struct Darwin {
    agent_dir: PathBuf,
    store: StoreUrl,
    suite: Option<PathBuf>,
    config: EvolveConfig,
}

impl Darwin {
    /// Evolve the agent whose `agent.toml` is in `agent_dir`.
    pub fn builder(agent_dir: impl Into<PathBuf>) -> Self {
        Self {
            agent_dir: agent_dir.into(),
            store: StoreUrl::default_sqlite(),
            suite: None,
            config: EvolveConfig::new("", ""),
        }
    }
    pub fn store(mut self, url: StoreUrl) -> Self {
        self.store = url;
        self
    }
    pub fn suite(mut self, dir: impl Into<PathBuf>) -> Self {
        self.suite = Some(dir.into());
        self
    }
    pub fn max_generations(mut self, n: u32) -> Self {
        self.config.generations = n;
        self
    }
    pub fn population_size(mut self, n: u32) -> Self {
        self.config.population = n;
        self
    }
    pub fn acceptance_threshold(mut self, t: f64) -> Self {
        self.config.threshold = t;
        self
    }
    pub fn selection(mut self, strategy: &str) -> Self {
        self.config.selection = strategy.into();
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.config.max_attempts = Some(n);
        self
    }
    pub fn build(self) -> Self {
        self
    }

    /// Registers the agent if needed and runs the evolution to its budget.
    pub async fn evolve(self) -> Result<Summary, EvolveError> {
        let store = Arc::new(Store::open(&self.store).await?);
        let (name, _) = ensure_registered(&store, &self.agent_dir, "library").await?;
        let manifest =
            AgentManifest::load(&self.agent_dir).map_err(|e| EvolveError::Config(e.to_string()))?;
        let suite = match self.suite {
            Some(s) => s,
            None => manifest_suite(&manifest, Some(&self.agent_dir.display().to_string()))
                .ok_or_else(|| {
                    EvolveError::Config("the agent names no suite; call .suite(DIR)".into())
                })?,
        };
        let mut config = self.config;
        config.agent = name;
        config.suite_dir = std::fs::canonicalize(&suite)?;
        let executor = Arc::new(
            Supervisor::native(Arc::new(NoopListener))
                .map_err(|e| EvolveError::Config(e.to_string()))?,
        );
        let proposer = Arc::new(MutateProposer::new(MutateConfig::default()));
        Evolution::new(store, executor, proposer, config)?
            .run(&NoObserver)
            .await
    }
}
