//! What every step of one run shares: the store, the run's id and
//! configuration, its suite, the views followed in memory ([`Known`]) and
//! the code trees read lately.

use std::sync::Arc;

use dgm_bench::{Split, Suite};
use dgm_events::{Event, Files, Metadata, Store, StreamType};
use dgm_projections::AgentArchive;

use crate::cache::Trees;
use crate::config::EvolveConfig;
use crate::error::EvolveError;
use crate::known::Known;

/// The split every search decision is made on.
pub const TRAIN: Split = Split::Train;

pub struct RunContext {
    pub store: Arc<Store>,
    pub run_id: String,
    pub config: EvolveConfig,
    pub suite: Suite,
    known: tokio::sync::Mutex<Known>,
    trees: std::sync::Mutex<Trees>,
}

impl RunContext {
    pub fn new(store: Arc<Store>, run_id: String, config: EvolveConfig, suite: Suite) -> Self {
        Self {
            store,
            known: tokio::sync::Mutex::new(Known::new(&run_id)),
            run_id,
            config,
            suite,
            trees: Default::default(),
        }
    }

    pub fn meta(&self, attempt: Option<&str>) -> Metadata {
        let meta = Metadata::new(format!("agent:{}", self.config.agent)).with_run(&self.run_id);
        match attempt {
            Some(a) => meta.with_attempt(a),
            None => meta,
        }
    }

    /// Appends `events` to the run's stream.
    pub async fn record(
        &self,
        events: Vec<Event>,
        attempt: Option<&str>,
    ) -> Result<(), EvolveError> {
        self.store
            .append(StreamType::Run, &self.run_id, events, &self.meta(attempt))
            .await?;
        Ok(())
    }

    /// The views, brought up to the head of the log.
    pub async fn known(&self) -> Result<tokio::sync::MutexGuard<'_, Known>, EvolveError> {
        let mut known = self.known.lock().await;
        known.refresh(&self.store).await?;
        Ok(known)
    }

    /// Reads the agent's archive (and the other views) in place, current:
    /// no copy of an archive that grows with every version.
    pub async fn with_archive<T>(
        &self,
        read: impl FnOnce(&Known, &AgentArchive) -> T,
    ) -> Result<T, EvolveError> {
        let known = self.known().await?;
        let archive = known.archive.get(&self.config.agent).ok_or_else(|| {
            EvolveError::Config(format!("agent `{}` is not registered", self.config.agent))
        })?;
        Ok(read(&known, archive))
    }

    /// The code tree named `hash`, from memory when it was used lately.
    pub async fn tree(&self, hash: &str) -> Result<Arc<Files>, EvolveError> {
        let kept = self
            .trees
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash);
        if let Some(files) = kept {
            return Ok(files);
        }
        let files = Arc::new(self.store.get_tree(hash).await?);
        self.keep_tree(hash, files.clone());
        Ok(files)
    }

    pub fn keep_tree(&self, hash: &str, files: Arc<Files>) {
        self.trees
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, files);
    }

    /// The suite's last stage (the full train set).
    pub fn last_stage(&self) -> u32 {
        self.suite.stages.len() as u32
    }

    /// The archive key of the full-train score.
    pub fn full_train_key(&self) -> String {
        dgm_projections::archive::score_key(&self.suite.name, self.last_stage(), TRAIN.as_str())
    }
}
