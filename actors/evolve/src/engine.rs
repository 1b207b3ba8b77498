//! The Darwin loop, as plain async Rust (the actor in `actor.rs` is a thin
//! shell around it).
//!
//! A generation draws `population` parents at once (recorded in one commit),
//! runs their attempts concurrently — diagnose, propose, validate, evaluate
//! in stages — and then decides them in index order, so a run is
//! deterministic under its seed. Every step is an event recorded before the
//! next begins; [`RunState`] tells a resumed run what is already done.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dgm_bench::{RunOptions, RunSpec, Split, Suite, run_stage_cached};
use dgm_events::agent::write_dir_files;
use dgm_events::blobs::tree_hash;
use dgm_events::*;
use dgm_projections::projector::catch_up_all;
use dgm_projections::{AgentArchive, TrajectoryFilter};
use dgm_propose::{
    AttemptNote, CallRecord, CodeTree, Diagnosis, FailureCategory, FailureExample, Feedback,
    ProposalRequest, Proposer, StrategyNote,
};
use dgm_sandbox::Executor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::config::EvolveConfig;
use crate::decide;
use crate::diagnose::diagnose;
use crate::known::Known;
use crate::record::{Subject, record_stage, record_version_evaluated};
use crate::run_state::{AttemptState, EvalRecord, RunState};
use crate::selection::{Candidate, select};

#[derive(Debug, thiserror::Error)]
pub enum EvolveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Projection(#[from] dgm_projections::ProjectionError),
    #[error("suite: {0}")]
    Suite(String),
    #[error("benchmark: {0}")]
    Bench(#[from] dgm_bench::RunError),
    #[error("{0}")]
    Config(String),
    #[error("run `{0}` not found (see `dgm runs`)")]
    UnknownRun(String),
    #[error("run `{0}` has already ended")]
    Ended(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// What a run achieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub run_id: String,
    pub agent: String,
    pub attempts: u32,
    pub admitted: u32,
    pub promoted: u32,
    pub rejected: u32,
    pub invalid: u32,
    /// admitted / attempts
    pub acceptance_rate: f64,
    pub generations: u32,
    pub seed_version: String,
    pub seed_score: Option<f64>,
    pub best_version: String,
    pub best_score: Option<f64>,
    /// best_score − seed_score
    pub gain: Option<f64>,
    pub best_metrics: BTreeMap<String, f64>,
    pub seed_metrics: BTreeMap<String, f64>,
    pub stop_reason: String,
    pub elapsed_secs: f64,
    /// Wall time of this invocation not spent inside the benchmark runner
    /// (sandbox + scorer), per attempt finished in it: the loop's own cost.
    /// Measured with `--population 1` only (overlapping attempts blur it).
    #[serde(default)]
    pub loop_ms_per_attempt: Option<f64>,
}

/// Hears about progress (the CLI draws bars; tests ignore it).
pub trait Observer: Send + Sync {
    fn generation_started(&self, _generation: u32, _total: u32, _attempts: u32) {}
    fn attempt_finished(&self, _finished: &AttemptFinished, _best: Option<f64>) {}
    fn generation_finished(&self, _generation: u32, _best: Option<f64>) {}
}

pub struct NoObserver;
impl Observer for NoObserver {}

/// One run of one agent.
pub struct Evolution<E: Executor> {
    store: Arc<Store>,
    executor: Arc<E>,
    proposer: Arc<dyn Proposer>,
    config: EvolveConfig,
    run_id: String,
    suite: Suite,
    stop: Arc<AtomicBool>,
    /// Time spent waiting on the benchmark runner, for the overhead figure.
    judging_nanos: std::sync::atomic::AtomicU64,
    /// The views every step reads, followed in memory.
    known: tokio::sync::Mutex<Known>,
    /// Code trees read or written lately: a parent is usually a recent child.
    trees: std::sync::Mutex<Trees>,
    /// Directories the runner reads code from, for reuse.
    code_dirs: CodeDirs,
    /// Selection candidates, kept up to date (under the `known` lock).
    candidates: std::sync::Mutex<KeptCandidates>,
}

/// Each version's children, by version id.
type Children = std::collections::HashMap<String, std::collections::BTreeSet<String>>;

/// The selection candidates and the ranking of admitted scores, kept
/// between steps and updated version by version (see
/// [`Evolution::update_candidates`]).
#[derive(Default)]
struct KeptCandidates {
    /// Admitted versions, in version order (the archive's).
    list: Vec<Candidate>,
    children: Children,
    /// Admitted versions with a full-train score, best last: by score, then
    /// the earliest created.
    ranked: std::collections::BTreeSet<(Score, std::cmp::Reverse<u64>, String)>,
    /// Each ranked version's place in `ranked`.
    rank_of: std::collections::HashMap<String, (Score, std::cmp::Reverse<u64>)>,
}

impl KeptCandidates {
    /// The best ranked version other than `except`, and its score.
    fn best(&self, except: Option<&str>) -> Option<(String, f64)> {
        self.ranked
            .iter()
            .rev()
            .find(|(_, _, v)| Some(v.as_str()) != except)
            .map(|(score, _, v)| (v.clone(), score.0))
    }

    fn rank(&mut self, version: &str, place: Option<(Score, std::cmp::Reverse<u64>)>) {
        if let Some((score, created)) = self.rank_of.remove(version) {
            self.ranked.remove(&(score, created, version.to_string()));
        }
        if let Some((score, created)) = place {
            self.ranked.insert((score, created, version.to_string()));
            self.rank_of.insert(version.to_string(), (score, created));
        }
    }
}

/// A score ordered totally (the archive's scores are finite).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score(f64);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // + 0.0 makes -0.0 equal to 0.0, as `partial_cmp` has it.
        (self.0 + 0.0).total_cmp(&(other.0 + 0.0))
    }
}

/// Code trees by tree hash, at most [`Trees::CAP`] of them and
/// [`Trees::CAP_BYTES`] in all (the oldest dropped first).
#[derive(Default)]
struct Trees {
    by_hash: std::collections::HashMap<String, Arc<Files>>,
    order: std::collections::VecDeque<String>,
    bytes: usize,
}

impl Trees {
    const CAP: usize = 1_024;
    const CAP_BYTES: usize = 64 << 20;

    fn size(files: &Files) -> usize {
        files
            .iter()
            .map(|(path, bytes)| path.len() + bytes.len())
            .sum()
    }

    fn insert(&mut self, hash: &str, files: Arc<Files>) {
        let size = Self::size(&files);
        if size > Self::CAP_BYTES || self.by_hash.contains_key(hash) {
            return;
        }
        self.by_hash.insert(hash.to_string(), files);
        self.order.push_back(hash.to_string());
        self.bytes += size;
        while self.order.len() > Self::CAP || self.bytes > Self::CAP_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(files) = self.by_hash.remove(&old) {
                self.bytes -= Self::size(&files);
            }
        }
    }
}

/// A directory holding one version's code for the benchmark runner, and
/// what it holds.
struct Written {
    dir: tempfile::TempDir,
    files: Files,
}

impl Written {
    fn new(files: &Files) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("dgm-version-").tempdir()?;
        write_dir_files(dir.path(), files)?;
        Ok(Self {
            dir,
            files: files.clone(),
        })
    }

    /// Makes the directory hold exactly `files`, touching only what differs.
    fn rewrite(&mut self, files: &Files) -> std::io::Result<()> {
        let root = self.dir.path();
        for gone in self.files.keys().filter(|p| !files.contains_key(*p)) {
            let path = root.join(gone);
            std::fs::remove_file(&path)?;
            // Directories left empty go too (a fresh one would not have them).
            let mut parent = path.parent();
            while let Some(dir) = parent.filter(|d| *d != root) {
                if std::fs::remove_dir(dir).is_err() {
                    break;
                }
                parent = dir.parent();
            }
        }
        let changed: Files = files
            .iter()
            .filter(|(path, bytes)| self.files.get(*path) != Some(*bytes))
            .map(|(path, bytes)| (path.clone(), bytes.clone()))
            .collect();
        // A changed file is replaced by a new one, not truncated: ext4
        // flushes a file truncated and rewritten when it is closed.
        for path in changed.keys().filter(|p| self.files.contains_key(*p)) {
            std::fs::remove_file(root.join(path))?;
        }
        write_dir_files(root, &changed)?;
        self.files = files.clone();
        Ok(())
    }
}

/// Directories versions were written to, kept for the next version:
/// consecutive versions differ in a file or two, and creating and deleting
/// files (new inodes) is most of what writing a fresh directory costs.
#[derive(Default)]
struct CodeDirs(std::sync::Mutex<Vec<Written>>);

impl CodeDirs {
    /// Kept at most (attempts in flight at once each hold one).
    const CAP: usize = 8;

    fn take(&self) -> Option<Written> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn give_back(&self, written: Written) {
        let mut free = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < Self::CAP {
            free.push(written);
        }
    }
}

/// A version's code for the benchmark runner: written on first use, once
/// however many stages and splits evaluate it (the sandbox mounts it
/// read-only), into a directory reused from an earlier version.
struct CodeDir<'a> {
    files: &'a Files,
    pool: &'a CodeDirs,
    written: std::sync::Mutex<Option<Written>>,
}

impl<'a> CodeDir<'a> {
    fn new(files: &'a Files, pool: &'a CodeDirs) -> Self {
        Self {
            files,
            pool,
            written: std::sync::Mutex::new(None),
        }
    }

    /// The directory, holding exactly the version's files.
    fn path(&self) -> Result<std::path::PathBuf, EvolveError> {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if written.is_none() {
            let reused = self
                .pool
                .take()
                .and_then(|mut w| w.rewrite(self.files).is_ok().then_some(w));
            *written = Some(match reused {
                Some(w) => w,
                None => Written::new(self.files)?,
            });
        }
        Ok(written
            .as_ref()
            .map(|w| w.dir.path().to_path_buf())
            .unwrap_or_default())
    }
}

impl Drop for CodeDir<'_> {
    fn drop(&mut self) {
        let written = self.written.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = written.take() {
            self.pool.give_back(w);
        }
    }
}

/// The split every search decision is made on.
const TRAIN: Split = Split::Train;

impl<E: Executor + 'static> Evolution<E> {
    /// A new run (recorded when [`Evolution::run`] starts).
    pub fn new(
        store: Arc<Store>,
        executor: Arc<E>,
        proposer: Arc<dyn Proposer>,
        config: EvolveConfig,
    ) -> Result<Self, EvolveError> {
        config.strategy().map_err(EvolveError::Config)?;
        if config.population == 0 || config.generations == 0 {
            return Err(EvolveError::Config(
                "--population and --generations must be at least 1".into(),
            ));
        }
        if !(config.threshold.is_finite() && config.threshold >= 0.0) {
            return Err(EvolveError::Config(
                "--threshold must be a number ≥ 0".into(),
            ));
        }
        let suite = dgm_bench::load_suite(&config.suite_dir)
            .map_err(|e| EvolveError::Suite(e.to_string()))?;
        let run_id = format!("run-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Ok(Self {
            store,
            executor,
            proposer,
            config,
            known: tokio::sync::Mutex::new(Known::new(&run_id)),
            run_id,
            suite,
            stop: Arc::new(AtomicBool::new(false)),
            judging_nanos: Default::default(),
            trees: Default::default(),
            code_dirs: Default::default(),
            candidates: Default::default(),
        })
    }

    /// Continues run `run_id` with the configuration it began with.
    pub async fn resume(
        store: Arc<Store>,
        executor: Arc<E>,
        proposer: Arc<dyn Proposer>,
        run_id: &str,
    ) -> Result<Self, EvolveError> {
        let state = RunState::load(&store, run_id).await?;
        let started = state
            .started
            .ok_or_else(|| EvolveError::UnknownRun(run_id.into()))?;
        if state.ended {
            return Err(EvolveError::Ended(run_id.into()));
        }
        let config: EvolveConfig = serde_json::from_value(started.config).map_err(|e| {
            EvolveError::Config(format!("run {run_id} has an unreadable config: {e}"))
        })?;
        let suite = dgm_bench::load_suite(&config.suite_dir)
            .map_err(|e| EvolveError::Suite(e.to_string()))?;
        Ok(Self {
            store,
            executor,
            proposer,
            config,
            run_id: run_id.into(),
            suite,
            stop: Arc::new(AtomicBool::new(false)),
            judging_nanos: Default::default(),
            known: tokio::sync::Mutex::new(Known::new(run_id)),
            trees: Default::default(),
            code_dirs: Default::default(),
            candidates: Default::default(),
        })
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn config(&self) -> &EvolveConfig {
        &self.config
    }

    /// Set it to stop after the attempts in flight (Ctrl-C).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    fn meta(&self, attempt: Option<&str>) -> Metadata {
        let meta = Metadata::new(format!("agent:{}", self.config.agent)).with_run(&self.run_id);
        match attempt {
            Some(a) => meta.with_attempt(a),
            None => meta,
        }
    }

    /// The views, brought up to the head of the log.
    async fn known(&self) -> Result<tokio::sync::MutexGuard<'_, Known>, EvolveError> {
        let mut known = self.known.lock().await;
        known.refresh(&self.store).await?;
        Ok(known)
    }

    /// Reads the agent's archive (and the other views) in place, current:
    /// no copy of an archive that grows with every version.
    async fn with_archive<T>(
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
    async fn tree(&self, hash: &str) -> Result<Arc<Files>, EvolveError> {
        let kept = self
            .trees
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_hash
            .get(hash)
            .cloned();
        if let Some(files) = kept {
            return Ok(files);
        }
        let files = Arc::new(self.store.get_tree(hash).await?);
        self.keep_tree(hash, files.clone());
        Ok(files)
    }

    fn keep_tree(&self, hash: &str, files: Arc<Files>) {
        self.trees
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, files);
    }

    /// The best score in the archive now.
    async fn current_best(&self) -> Result<Option<f64>, EvolveError> {
        Ok(self.best_now(None).await?.map(|(_, score)| score))
    }

    /// This run's state, current.
    async fn run_state(&self) -> Result<RunState, EvolveError> {
        Ok(self.known().await?.run.clone())
    }

    fn last_stage(&self) -> u32 {
        self.suite.stages.len() as u32
    }

    /// Runs until a budget is spent; resumable at any point.
    pub async fn run(&self, observer: &dyn Observer) -> Result<Summary, EvolveError> {
        let span =
            tracing::info_span!("darwin.evolve", run = %self.run_id, agent = %self.config.agent);
        self.run_inner(observer).instrument(span).await
    }

    async fn run_inner(&self, observer: &dyn Observer) -> Result<Summary, EvolveError> {
        let began = Instant::now();
        let mut state = self.run_state().await?;
        if state.started.is_none() {
            let agent = self
                .with_archive(|_, archive| archive.agent.clone())
                .await?;
            let config = serde_json::to_value(&self.config)
                .map_err(|e| EvolveError::Config(e.to_string()))?;
            self.store
                .append(
                    StreamType::Run,
                    &self.run_id,
                    vec![
                        RunStarted {
                            run_id: self.run_id.clone(),
                            agent,
                            suite: self.suite.name.clone(),
                            config,
                        }
                        .into(),
                    ],
                    &self.meta(None),
                )
                .await?;
            state = self.run_state().await?;
        }
        let noisy = self.baseline(&state).await?;
        let strategy = self.config.strategy().map_err(EvolveError::Config)?;
        let mut generation = state.last_generation().unwrap_or(0);
        // Continue the last started generation if it has unfinished attempts.
        if generation > 0
            && state
                .generation(generation)
                .iter()
                .all(|(_, a)| a.finished.is_some())
        {
            generation += 1;
        } else if generation == 0 {
            generation = 1;
        }
        let stop_reason;
        loop {
            // Read under the lock, without copying the run's whole state.
            let (attempts_done, resuming_generation, spent) = {
                let known = self.known().await?;
                let done = known.run.finished_attempts().count() as u32;
                let resuming = !known.run.generation(generation).is_empty();
                let spent = (!resuming)
                    .then(|| {
                        self.budget_spent(&known.run, generation, done, began, known.llm_spent)
                    })
                    .flatten();
                (done, resuming, spent)
            };
            if let Some(reason) = spent {
                stop_reason = reason;
                break;
            }
            if !resuming_generation {
                self.start_generation(generation, &strategy, attempts_done)
                    .await?;
            }
            let attempts: Vec<(String, AttemptState)> = self
                .known()
                .await?
                .run
                .generation(generation)
                .into_iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            observer.generation_started(generation, self.config.generations, attempts.len() as u32);
            // Execute concurrently; decide in index order.
            let executed = futures::future::join_all(
                attempts.iter().map(|(id, a)| self.execute_attempt(id, a)),
            )
            .await;
            for ((id, _), result) in attempts.iter().zip(executed) {
                let attempt = result?;
                if attempt.finished.is_some() {
                    continue;
                }
                let finished = self.decide(id, &attempt, noisy).await?;
                observer.attempt_finished(&finished, self.current_best().await?);
            }
            observer.generation_finished(generation, self.current_best().await?);
            if self.stop.load(Ordering::SeqCst) {
                stop_reason = "interrupted".to_string();
                break;
            }
            generation += 1;
        }
        let state = self.run_state().await?;
        let summary = self.summary(&state, &stop_reason, began).await?;
        if stop_reason == "interrupted" {
            self.store
                .append(
                    StreamType::Run,
                    &self.run_id,
                    vec![
                        RunInterrupted {
                            run_id: self.run_id.clone(),
                            reason: "stopped by the user; `dgm resume` continues".into(),
                        }
                        .into(),
                    ],
                    &self.meta(None),
                )
                .await?;
        } else {
            self.store
                .append(
                    StreamType::Run,
                    &self.run_id,
                    vec![
                        RunCompleted {
                            run_id: self.run_id.clone(),
                            summary: serde_json::to_value(&summary).unwrap_or_default(),
                        }
                        .into(),
                    ],
                    &self.meta(None),
                )
                .await?;
        }
        // The stored views were not touched during the run (see `known`):
        // bring them up to date once, so readers find them current.
        catch_up_all(&self.store).await?;
        Ok(summary)
    }

    fn budget_spent(
        &self,
        state: &RunState,
        generation: u32,
        attempts_done: u32,
        began: Instant,
        (tokens, cost): (u64, f64),
    ) -> Option<String> {
        if self.stop.load(Ordering::SeqCst) {
            return Some("interrupted".into());
        }
        if let Some(max) = self.config.max_llm_tokens
            && tokens >= max
        {
            return Some(format!("LLM token budget spent ({tokens} of {max} tokens)"));
        }
        if let Some(max) = self.config.max_llm_cost_usd
            && cost >= max
        {
            return Some(format!("LLM dollar budget spent (${cost:.4} of ${max:.4})"));
        }
        if generation > self.config.generations {
            return Some(match self.config.generations {
                1 => "1 generation done".to_string(),
                n => format!("{n} generations done"),
            });
        }
        if let Some(max) = self.config.max_attempts
            && attempts_done >= max
        {
            return Some(format!("{max} attempts done"));
        }
        if let Some(limit) = self.config.time_limit_secs
            && began.elapsed() >= Duration::from_secs(limit)
        {
            return Some(format!("time limit of {limit} s reached"));
        }
        if let Some(plateau) = self.config.plateau {
            let last_promotion = state
                .attempts
                .values()
                .filter(|a| a.finished.as_ref().is_some_and(|f| f.outcome == "promoted"))
                .filter_map(|a| a.started.as_ref().map(|s| s.generation))
                .max()
                .unwrap_or(0);
            if generation > plateau && generation - 1 - last_promotion >= plateau {
                return Some(format!("no promotion in {plateau} generations"));
            }
        }
        None
    }

    /// Scores the active version on the train split (twice: a disagreement
    /// means evaluation is noisy). Returns whether it is.
    async fn baseline(&self, state: &RunState) -> Result<bool, EvolveError> {
        let active = self
            .with_archive(|_, archive| {
                let active = archive.active.clone()?;
                let tree = archive.versions.get(&active)?.tree_hash.clone();
                Some((active, tree))
            })
            .await?;
        let Some((active, tree)) = active else {
            return Err(EvolveError::Config(format!(
                "agent `{}` has no active version",
                self.config.agent
            )));
        };
        let files = self.tree(&tree).await?;
        let code = CodeDir::new(&files, &self.code_dirs);
        let done = state.attempts.get("baseline").cloned().unwrap_or_default();
        let first = self
            .evaluate_train(None, &active, &code, &done, "baseline")
            .await?;
        let second_id = format!("{}/baseline/re", self.run_id);
        let second = match done.evals.get(&second_id) {
            Some(r) => r.clone(),
            None => {
                self.evaluate(
                    None,
                    &active,
                    &code,
                    self.last_stage(),
                    TRAIN,
                    &second_id,
                    &done,
                    &mut BTreeMap::new(),
                )
                .await?
            }
        };
        Ok(decide::noisy(
            first.last().and_then(|r| r.score),
            second.score,
        ))
    }

    /// Draws this generation's parents and records them in one commit.
    async fn start_generation(
        &self,
        generation: u32,
        strategy: &crate::selection::Strategy,
        attempts_done: u32,
    ) -> Result<(), EvolveError> {
        let mut known = self.known().await?;
        if !known.archive.contains_key(&self.config.agent) {
            return Err(EvolveError::Config(format!(
                "agent `{}` is not registered",
                self.config.agent
            )));
        }
        let events = {
            let mut kept = self.candidates.lock().unwrap_or_else(|p| p.into_inner());
            self.update_candidates(&mut kept, &mut known);
            drop(known);
            self.draw(generation, strategy, attempts_done, &kept.list)?
        };
        // The whole draw is one commit: a kill can never leave a generation
        // half-started. (The run state files each event by its own attempt id.)
        self.store
            .append(StreamType::Run, &self.run_id, events, &self.meta(None))
            .await?;
        Ok(())
    }

    /// This generation's parents (and donors, and seeds), drawn from
    /// `candidates` as `AttemptStarted` events.
    fn draw(
        &self,
        generation: u32,
        strategy: &crate::selection::Strategy,
        attempts_done: u32,
        candidates: &[Candidate],
    ) -> Result<Vec<Event>, EvolveError> {
        let mut rng = ChaCha8Rng::seed_from_u64(
            self.config.seed ^ (generation as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let mut n = self.config.population;
        if let Some(max) = self.config.max_attempts {
            n = n.min(max.saturating_sub(attempts_done)).max(1);
        }
        let selection = select(strategy, candidates, n as usize, &mut rng)
            .map_err(|e| EvolveError::Config(e.to_string()))?;
        let mut events = Vec::new();
        for (index, parent) in selection.chosen.iter().enumerate() {
            let donor = (candidates.len() > 1
                && rng.gen_bool(self.config.crossover_rate.clamp(0.0, 1.0)))
            .then(|| {
                let others: Vec<&Candidate> =
                    candidates.iter().filter(|c| &c.id != parent).collect();
                others[rng.gen_range(0..others.len())].id.clone()
            });
            events.push(
                AttemptStarted {
                    run_id: self.run_id.clone(),
                    attempt_id: format!("{}/g{generation}/a{index}", self.run_id),
                    generation,
                    index: index as u32,
                    parent: parent.clone(),
                    donor,
                    selection: strategy.name().into(),
                    weights: selection.weights.clone(),
                    seed: rng.r#gen(),
                }
                .into(),
            );
        }
        Ok(events)
    }

    /// Admitted versions as selection candidates, scored on train at the
    /// deepest stage they reached — rebuilt from the whole archive.
    fn candidates(&self, archive: &AgentArchive) -> Vec<Candidate> {
        let mut children = Children::new();
        for child in archive.versions.values() {
            if let Some(parent) = &child.parent {
                children
                    .entry(parent.clone())
                    .or_default()
                    .insert(child.version.clone());
            }
        }
        archive
            .versions
            .values()
            .filter(|v| v.admitted == Some(true))
            .map(|v| self.candidate(archive, v, &children))
            .collect()
    }

    /// Brings the kept candidates up to date with the versions whose rows
    /// changed since the last time (what [`Known::touched`] collected):
    /// each generation costs what changed, not the whole archive.
    fn update_candidates(&self, kept: &mut KeptCandidates, known: &mut Known) {
        let touched = std::mem::take(&mut known.touched);
        let Some(archive) = known.archive.get(&self.config.agent) else {
            return;
        };
        let mut redo = std::collections::BTreeSet::new();
        for (agent, version) in touched {
            if agent != self.config.agent {
                continue;
            }
            // A child's row changes its parent's candidate (children, wins).
            if let Some(parent) = archive
                .versions
                .get(&version)
                .and_then(|r| r.parent.clone())
            {
                kept.children
                    .entry(parent.clone())
                    .or_default()
                    .insert(version.clone());
                redo.insert(parent);
            }
            redo.insert(version);
        }
        let full_train = dgm_projections::archive::score_key(
            &self.suite.name,
            self.last_stage(),
            TRAIN.as_str(),
        );
        for version in redo {
            let admitted = archive
                .versions
                .get(&version)
                .filter(|v| v.admitted == Some(true));
            let place = admitted.and_then(|v| {
                let score = v.scores.get(&full_train)?;
                Some((Score(*score), std::cmp::Reverse(v.created_at)))
            });
            kept.rank(&version, place);
            let candidate = admitted.map(|v| self.candidate(archive, v, &kept.children));
            let at = kept.list.binary_search_by(|c| c.id.as_str().cmp(&version));
            match (at, candidate) {
                (Ok(i), Some(c)) => kept.list[i] = c,
                (Ok(i), None) => {
                    kept.list.remove(i);
                }
                (Err(i), Some(c)) => kept.list.insert(i, c),
                (Err(_), None) => {}
            }
        }
        debug_assert_eq!(
            format!("{:?}", kept.list),
            format!("{:?}", self.candidates(archive)),
            "the kept candidates must equal a rebuild"
        );
        debug_assert_eq!(
            kept.best(None),
            self.best_version(archive, None),
            "the kept ranking must equal a scan"
        );
    }

    /// The best admitted version on full train other than `except`, and its
    /// score, now: from the kept ranking, not a scan of the archive.
    async fn best_now(&self, except: Option<&str>) -> Result<Option<(String, f64)>, EvolveError> {
        let mut known = self.known().await?;
        let mut kept = self.candidates.lock().unwrap_or_else(|p| p.into_inner());
        self.update_candidates(&mut kept, &mut known);
        Ok(kept.best(except))
    }

    /// Version `v` as a selection candidate.
    fn candidate(
        &self,
        archive: &AgentArchive,
        v: &dgm_projections::VersionRow,
        children: &Children,
    ) -> Candidate {
        let score_of = |v: &dgm_projections::VersionRow| {
            v.score_on(&self.suite.name, TRAIN.as_str()).map(|(_, s)| s)
        };
        let own = score_of(v).unwrap_or(0.0);
        let (mut wins, mut losses) = (0, 0);
        let scores = children
            .get(&v.version)
            .into_iter()
            .flatten()
            .filter_map(|c| archive.versions.get(c))
            .map(score_of);
        for score in scores {
            match score {
                Some(s) if s > own => wins += 1,
                _ => losses += 1,
            }
        }
        Candidate {
            id: v.version.clone(),
            score: own,
            children: v.children as usize,
            wins,
            losses,
            parent: v.parent.clone(),
            behaviour: v.behaviour_on(&self.suite.name, TRAIN.as_str()),
        }
    }

    /// Best admitted train score at the last stage, optionally ignoring one version.
    fn best_score(&self, archive: &AgentArchive, except: Option<&str>) -> Option<f64> {
        self.best_version(archive, except).map(|(_, s)| s)
    }

    fn best_version(&self, archive: &AgentArchive, except: Option<&str>) -> Option<(String, f64)> {
        let key = dgm_projections::archive::score_key(
            &self.suite.name,
            self.last_stage(),
            TRAIN.as_str(),
        );
        archive
            .versions
            .values()
            .filter(|v| v.admitted == Some(true) && Some(v.version.as_str()) != except)
            .filter_map(|v| v.scores.get(&key).map(|s| (v, *s)))
            .max_by(|(a, sa), (b, sb)| {
                sa.partial_cmp(sb)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(b.created_at.cmp(&a.created_at))
            })
            .map(|(v, s)| (v.version.clone(), s))
    }

    /// Diagnose → propose → validate → create → evaluate. Returns the attempt's
    /// state with everything recorded so far.
    async fn execute_attempt(
        &self,
        attempt_id: &str,
        attempt: &AttemptState,
    ) -> Result<AttemptState, EvolveError> {
        let span = tracing::info_span!("darwin.execute_attempt", attempt = %attempt_id);
        self.execute_attempt_inner(attempt_id, attempt.clone())
            .instrument(span)
            .await
    }

    async fn execute_attempt_inner(
        &self,
        attempt_id: &str,
        mut attempt: AttemptState,
    ) -> Result<AttemptState, EvolveError> {
        if attempt.finished.is_some() || attempt.rejected || attempt.admitted {
            return Ok(attempt);
        }
        let Some(started) = attempt.started.clone() else {
            return Ok(attempt);
        };
        let meta = self.meta(Some(attempt_id));
        // Everything this step reads from the views, in one look: what the
        // proposer is told besides the diagnosis (cheap, derived from the
        // log), and the replay buffer's findings when there is no diagnosis.
        let filter = TrajectoryFilter {
            agent: Some(self.config.agent.clone()),
            version: Some(started.parent.clone()),
            ..Default::default()
        };
        let (parent_hash, donor_hash, evolvable, protected, context, findings) = self
            .with_archive(|known, archive| {
                let parent_hash = archive
                    .versions
                    .get(&started.parent)
                    .map(|row| row.tree_hash.clone());
                let donor_hash = started
                    .donor
                    .as_ref()
                    .and_then(|d| archive.versions.get(d))
                    .map(|row| row.tree_hash.clone());
                let context = self.proposal_context(known, &started.parent, archive, attempt_id);
                let findings = attempt.diagnosis.is_none().then(|| {
                    diagnose(
                        known
                            .trajectories_of(&self.config.agent, &started.parent)
                            .filter(|r| filter.matches(r)),
                        known.bank.values().filter(|s| s.agent == self.config.agent),
                    )
                });
                (
                    parent_hash,
                    donor_hash,
                    archive.manifest.evolvable.clone(),
                    archive.manifest.protected.clone(),
                    context,
                    findings,
                )
            })
            .await?;
        let parent_hash = parent_hash
            .ok_or_else(|| EvolveError::Config(format!("parent {} vanished", started.parent)))?;
        let parent_files = self.tree(&parent_hash).await?;
        let donor = match &donor_hash {
            Some(hash) => Some(CodeTree(self.tree(hash).await?.as_ref().clone())),
            None => None,
        };
        let mut request = ProposalRequest {
            parent: CodeTree(parent_files.as_ref().clone()),
            evolvable,
            protected,
            diagnosis: Diagnosis {
                failures: context.failures,
                ..Diagnosis::default()
            },
            donor,
            seed: started.seed,
            parent_score: context.parent_score,
            strategies: context.strategies,
            lineage: context.lineage,
        };

        // Diagnose (from the replay buffer; a model adds its analysis when the proposer has one).
        let diagnosis = match (&attempt.diagnosis, findings) {
            (Some(d), _) => d.clone(),
            (None, None) => {
                return Err(EvolveError::Config(format!(
                    "{attempt_id}: no diagnosis and no findings"
                )));
            }
            (None, Some(findings)) => {
                request.diagnosis.summary = findings.summary.clone();
                request.diagnosis.failure_categories = categories(&findings.categories);
                request.diagnosis.rationales = findings.rationales.clone();
                let analysed = self.proposer.analyse(&request).await;
                self.record_calls(attempt_id, &analysed.calls).await?;
                let analysis = match analysed.value {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(attempt = %attempt_id, "model diagnosis failed: {e}");
                        None
                    }
                };
                let made = DiagnosisMade {
                    run_id: self.run_id.clone(),
                    attempt_id: attempt_id.into(),
                    parent: started.parent.clone(),
                    summary: findings.summary,
                    categories: findings.categories,
                    rationales: findings.rationales,
                    strategies: findings.strategies,
                    analysis: analysis.map(|a| DiagnosisAnalysis {
                        model: a.model,
                        summary: a.summary,
                        possible_improvements: a.possible_improvements,
                        chosen_proposal: a.chosen_proposal,
                        implementation_suggestion: a.implementation_suggestion,
                        problem_statement: a.problem_statement,
                    }),
                };
                self.store
                    .append(
                        StreamType::Run,
                        &self.run_id,
                        vec![made.clone().into()],
                        &meta,
                    )
                    .await?;
                attempt.diagnosis = Some(made.clone());
                made
            }
        };
        request.diagnosis.summary = diagnosis.summary.clone();
        request.diagnosis.failure_categories = categories(&diagnosis.categories);
        request.diagnosis.rationales = diagnosis.rationales.clone();
        request.diagnosis.analysis =
            diagnosis
                .analysis
                .clone()
                .map(|a| dgm_propose::DiagnosisAnalysis {
                    model: a.model,
                    summary: a.summary,
                    possible_improvements: a.possible_improvements,
                    chosen_proposal: a.chosen_proposal,
                    implementation_suggestion: a.implementation_suggestion,
                    problem_statement: a.problem_statement,
                });

        // Propose and validate (a seeded proposer proposes the same child when an attempt resumes).
        let (child_version, child_hash) = match &attempt.child {
            Some(child) => (child.version.clone(), child.tree_hash.clone()),
            None => {
                let proposed = self.proposer.propose_recorded(&request).await;
                self.record_calls(attempt_id, &proposed.calls).await?;
                let proposal = match proposed.value {
                    Ok(p) => p,
                    Err(e) => {
                        return self
                            .finish_early(
                                attempt_id,
                                attempt,
                                "invalid",
                                format!("proposal failed: {e}"),
                                None,
                            )
                            .await;
                    }
                };
                if let Err(e) = dgm_propose::patch::check_child(
                    &request.parent,
                    &proposal.files,
                    &request.policy(),
                ) {
                    return self
                        .finish_early(
                            attempt_id,
                            attempt,
                            "invalid",
                            format!("validation failed: {e}"),
                            Some(proposal.kind),
                        )
                        .await;
                }
                let patch = match dgm_propose::patch::diff(&request.parent, &proposal.files) {
                    Ok(p) => p,
                    Err(e) => {
                        return self
                            .finish_early(
                                attempt_id,
                                attempt,
                                "invalid",
                                format!("patch failed: {e}"),
                                Some(proposal.kind),
                            )
                            .await;
                    }
                };
                let files: Files = proposal.files.0.clone();
                let hash = tree_hash(&files);
                let version = hash[..12].to_string();
                if self
                    .with_archive(|_, archive| archive.versions.contains_key(&version))
                    .await?
                {
                    return self
                        .finish_early(
                            attempt_id,
                            attempt,
                            "duplicate",
                            format!("the child equals existing version {version}"),
                            Some(proposal.kind),
                        )
                        .await;
                }
                self.store.put_tree(&files).await?;
                self.keep_tree(&hash, Arc::new(files));
                let created = VersionCreated {
                    agent: self.config.agent.clone(),
                    version: version.clone(),
                    parent: Some(started.parent.clone()),
                    tree_hash: hash,
                    patch,
                    origin: Origin::Proposer,
                    summary: format!("{}: {}", proposal.kind, proposal.summary),
                };
                let create = self
                    .store
                    .agent(
                        &self.config.agent,
                        AgentCommand::CreateVersion(created.clone()),
                        &meta,
                    )
                    .await;
                match create {
                    Ok(()) => {}
                    // A sibling attempt in flight proposed the same code first.
                    Err(StoreError::Command(CommandError::DuplicateVersion {
                        version, ..
                    })) => {
                        return self
                            .finish_early(
                                attempt_id,
                                attempt,
                                "duplicate",
                                format!(
                                    "the child equals version {version}, created by another attempt"
                                ),
                                Some(proposal.kind.clone()),
                            )
                            .await;
                    }
                    Err(e) => return Err(e.into()),
                }
                let hash = created.tree_hash.clone();
                attempt.child = Some(created);
                (version, hash)
            }
        };

        // Evaluate in stages on train.
        let files = self.tree(&child_hash).await?;
        let records = self
            .evaluate_train(
                Some(attempt_id),
                &child_version,
                &CodeDir::new(&files, &self.code_dirs),
                &attempt,
                attempt_id,
            )
            .await?;
        for r in records {
            attempt
                .evals
                .insert(format!("{}/train/{}", attempt_id, r.stage), r);
        }
        Ok(attempt)
    }

    async fn finish_early(
        &self,
        attempt_id: &str,
        mut attempt: AttemptState,
        outcome: &str,
        reason: String,
        kind: Option<String>,
    ) -> Result<AttemptState, EvolveError> {
        let finished = AttemptFinished {
            run_id: self.run_id.clone(),
            attempt_id: attempt_id.into(),
            outcome: outcome.into(),
            child: None,
            score: None,
            reason,
            proposal_kind: kind,
        };
        self.store
            .append(
                StreamType::Run,
                &self.run_id,
                vec![finished.clone().into()],
                &self.meta(Some(attempt_id)),
            )
            .await?;
        attempt.finished = Some(finished);
        Ok(attempt)
    }

    /// Records the model calls a proposer made for an attempt, one event each.
    async fn record_calls(
        &self,
        attempt_id: &str,
        calls: &[CallRecord],
    ) -> Result<(), EvolveError> {
        if calls.is_empty() {
            return Ok(());
        }
        let events: Vec<Event> = calls
            .iter()
            .map(|c| {
                LlmCallMade {
                    run_id: self.run_id.clone(),
                    attempt_id: Some(attempt_id.into()),
                    purpose: c.purpose.clone(),
                    model: c.model.clone(),
                    prompt_tokens: c.prompt_tokens,
                    completion_tokens: c.completion_tokens,
                    latency_ms: c.latency_ms,
                    cost_usd: c.cost_usd,
                    outcome: c.outcome.clone(),
                    error: c.error.clone(),
                }
                .into()
            })
            .collect();
        self.store
            .append(
                StreamType::Run,
                &self.run_id,
                events,
                &self.meta(Some(attempt_id)),
            )
            .await?;
        Ok(())
    }

    /// Failed runs of the parent, the agent's live strategies and the
    /// lineage's recent attempts in this run: what a proposer's prompt quotes.
    fn proposal_context(
        &self,
        known: &Known,
        parent: &str,
        archive: &AgentArchive,
        attempt_id: &str,
    ) -> ProposalContext {
        let filter = TrajectoryFilter {
            agent: Some(self.config.agent.clone()),
            version: Some(parent.to_string()),
            ..Default::default()
        };
        let failures: Vec<FailureExample> = known
            .trajectories_of(&self.config.agent, parent)
            .filter(|r| filter.matches(r) && r.trajectory.outcome != "success")
            .take(5)
            .map(|r| FailureExample {
                task: r.trajectory.task.clone(),
                category: r
                    .trajectory
                    .error_category
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
                rationale: r.trajectory.rationale.clone(),
                excerpt: r.trajectory.log_excerpt.clone(),
            })
            .collect();
        let mut live: Vec<_> = known
            .bank
            .values()
            .filter(|s| s.agent == self.config.agent && !s.pruned)
            .collect();
        live.sort_by(|a, b| {
            b.win_rate
                .partial_cmp(&a.win_rate)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.strategy_id.cmp(&b.strategy_id))
        });
        let strategies = live
            .iter()
            .take(5)
            .map(|s| StrategyNote {
                kind: s.kind.clone(),
                diagnosis: s.diagnosis.clone(),
                summary: s.summary.clone(),
                win_rate: s.win_rate,
                uses: s.uses,
            })
            .collect();
        let mut ancestry = std::collections::BTreeSet::new();
        let mut cursor = Some(parent.to_string());
        while let Some(v) = cursor {
            if !ancestry.insert(v.clone()) {
                break;
            }
            cursor = archive.versions.get(&v).and_then(|r| r.parent.clone());
        }
        let mut lineage: Vec<(u32, u32, AttemptNote)> = known
            .run
            .attempts
            .iter()
            .filter(|(id, _)| id.as_str() != attempt_id)
            .filter_map(|(_, a)| {
                let s = a.started.as_ref()?;
                let f = a.finished.as_ref()?;
                ancestry.contains(&s.parent).then(|| {
                    (
                        s.generation,
                        s.index,
                        AttemptNote {
                            parent: s.parent.clone(),
                            summary: a
                                .child
                                .as_ref()
                                .map(|c| c.summary.clone())
                                .or_else(|| f.proposal_kind.clone())
                                .unwrap_or_default(),
                            outcome: f.outcome.clone(),
                            score: f.score,
                            reason: f.reason.clone(),
                        },
                    )
                })
            })
            .collect();
        lineage.sort_by_key(|n| std::cmp::Reverse((n.0, n.1)));
        ProposalContext {
            failures,
            strategies,
            lineage: lineage.into_iter().take(8).map(|(_, _, n)| n).collect(),
            parent_score: archive
                .versions
                .get(parent)
                .and_then(|p| p.score_on(&self.suite.name, TRAIN.as_str()))
                .map(|(_, s)| s),
        }
    }

    /// Runs the train stages in order, stopping at a failed gate; reuses
    /// evaluations already recorded.
    async fn evaluate_train(
        &self,
        attempt: Option<&str>,
        version: &str,
        code: &CodeDir<'_>,
        done: &AttemptState,
        prefix: &str,
    ) -> Result<Vec<EvalRecord>, EvolveError> {
        let prefix = if attempt.is_some() {
            prefix.to_string()
        } else {
            format!("{}/{prefix}", self.run_id)
        };
        let mut out = Vec::new();
        // Tasks a later stage shares with an earlier one run once.
        let mut earlier_stages = BTreeMap::new();
        for stage in 1..=self.last_stage() {
            let id = format!("{prefix}/train/{stage}");
            let record = match done.evals.get(&id) {
                Some(r) => {
                    self.repair_version_evaluated(attempt, &id, version, r)
                        .await?;
                    r.clone()
                }
                None => {
                    self.evaluate(
                        attempt,
                        version,
                        code,
                        stage,
                        TRAIN,
                        &id,
                        done,
                        &mut earlier_stages,
                    )
                    .await?
                }
            };
            let passed = record.passed_gate;
            out.push(record);
            if !passed {
                break;
            }
        }
        Ok(out)
    }

    /// After a crash between the evaluation and the version's record of it.
    async fn repair_version_evaluated(
        &self,
        attempt: Option<&str>,
        id: &str,
        version: &str,
        r: &EvalRecord,
    ) -> Result<(), EvolveError> {
        let key = dgm_projections::archive::score_key(&self.suite.name, r.stage, &r.split);
        let has = self
            .with_archive(|_, archive| {
                archive
                    .versions
                    .get(version)
                    .is_some_and(|v| v.metrics.contains_key(&key))
            })
            .await?;
        if !has {
            record_version_evaluated(
                &self.store,
                &self.meta(attempt),
                id,
                &self.config.agent,
                version,
                r.stage,
                &r.split,
                &self.suite.name,
                r.score,
                &r.metrics,
            )
            .await?;
        }
        Ok(())
    }

    /// One stage on one split, recorded as evaluation `id`.
    #[allow(clippy::too_many_arguments)]
    async fn evaluate(
        &self,
        attempt: Option<&str>,
        version: &str,
        code: &CodeDir<'_>,
        stage: u32,
        split: Split,
        id: &str,
        done: &AttemptState,
        earlier_stages: &mut BTreeMap<String, dgm_bench::Trajectory>,
    ) -> Result<EvalRecord, EvolveError> {
        if let Some(r) = done.evals.get(id) {
            return Ok(r.clone());
        }
        let command = self
            .known()
            .await?
            .archive
            .get(&self.config.agent)
            .map(|archive| archive.manifest.run.clone())
            .unwrap_or_default();
        let spec = RunSpec {
            code_dir: code.path()?,
            command,
            env: BTreeMap::new(),
        };
        let stage_def = if split == TRAIN {
            self.suite.stages[(stage - 1) as usize].clone()
        } else {
            dgm_bench::Stage::all()
        };
        let opts = RunOptions {
            parallelism: self.config.parallelism.max(1),
            docker_available: false,
        };
        let judged = Instant::now();
        let report = run_stage_cached(
            &self.suite,
            &stage_def,
            split,
            &spec,
            self.executor.as_ref(),
            &opts,
            &|_| {},
            earlier_stages,
        )
        .await;
        self.judging_nanos
            .fetch_add(judged.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let report = report?;
        let meta = self.meta(attempt);
        let subject = Subject {
            agent: Some(&self.config.agent),
            version: Some(version),
            stage,
        };
        Ok(record_stage(&self.store, &meta, id, &subject, &report).await?)
    }

    /// Admit or reject, maybe promote; remember; finish. Idempotent.
    async fn decide(
        &self,
        attempt_id: &str,
        attempt: &AttemptState,
        noisy: bool,
    ) -> Result<AttemptFinished, EvolveError> {
        let meta = self.meta(Some(attempt_id));
        let agent = &self.config.agent;
        let child = attempt
            .child
            .clone()
            .ok_or_else(|| EvolveError::Config(format!("{attempt_id} has no child")))?;
        let version = child.version.clone();
        let kind = child.summary.split(':').next().map(str::to_string);
        let stage1 = attempt.evals.get(&format!("{attempt_id}/train/1"));
        let last = attempt
            .evals
            .get(&format!("{attempt_id}/train/{}", self.last_stage()));
        let parent_score = self
            .with_archive(|_, archive| {
                attempt
                    .started
                    .as_ref()
                    .and_then(|s| archive.versions.get(&s.parent))
                    .and_then(|p| p.score_on(&self.suite.name, TRAIN.as_str()))
                    .map(|(_, s)| s)
            })
            .await?;
        let best = self.best_now(Some(&version)).await?;

        let (outcome, reason, score) = match stage1 {
            Some(r) if r.passed_gate => {
                let score = last.and_then(|r| r.score);
                match (score, best) {
                    (Some(s), Some((best_v, b))) if decide::beats(s, b, self.config.threshold) => {
                        match self
                            .confirm(attempt_id, attempt, &version, &best_v, noisy)
                            .await?
                        {
                            Ok(why) => (
                                "promoted",
                                format!(
                                    "train {s:.4} beats best {b:.4} ({best_v}) by more than {:.1}%; {why}",
                                    self.config.threshold * 100.0
                                ),
                                Some(s),
                            ),
                            Err(why) => (
                                "admitted",
                                format!("train {s:.4} beats best {b:.4} but {why}"),
                                Some(s),
                            ),
                        }
                    }
                    (Some(s), Some((best_v, b))) => (
                        "admitted",
                        format!(
                            "train {s:.4} does not beat best {b:.4} ({best_v}) by more than {:.1}%",
                            self.config.threshold * 100.0
                        ),
                        Some(s),
                    ),
                    (Some(s), None) => (
                        "promoted",
                        format!("train {s:.4}; no scored version to beat"),
                        Some(s),
                    ),
                    (None, _) => (
                        "admitted",
                        "passes the first stage but stopped at a later gate".to_string(),
                        stage1.and_then(|r| r.score),
                    ),
                }
            }
            Some(r) => {
                let cats: Vec<String> = r
                    .failures
                    .iter()
                    .map(|(c, n)| format!("{c} ×{n}"))
                    .collect();
                (
                    "rejected",
                    format!(
                        "fails the first stage's gate ({})",
                        if cats.is_empty() {
                            "low score".into()
                        } else {
                            cats.join(", ")
                        }
                    ),
                    r.score,
                )
            }
            None => ("rejected", "was not evaluated".to_string(), None),
        };

        // Agent-side effects, each skipped if already recorded.
        if outcome == "rejected" {
            if !attempt.rejected {
                self.store
                    .agent(
                        agent,
                        AgentCommand::Reject {
                            version: version.clone(),
                            reason: reason.clone(),
                        },
                        &meta,
                    )
                    .await?;
            }
        } else if !attempt.admitted {
            self.store
                .agent(
                    agent,
                    AgentCommand::Admit {
                        version: version.clone(),
                        reason: if outcome == "promoted" {
                            "passes the first stage; promoted".into()
                        } else {
                            reason.clone()
                        },
                    },
                    &meta,
                )
                .await?;
        }
        if outcome == "promoted" && !attempt.activated {
            self.store
                .agent(
                    agent,
                    AgentCommand::Activate {
                        version: version.clone(),
                        reason: reason.clone(),
                    },
                    &meta,
                )
                .await?;
        }
        // Remember: a promotion becomes a strategy; a used strategy gets an outcome.
        if outcome == "promoted" && !attempt.strategy_stored {
            let stored = StrategyStored {
                strategy_id: attempt_id.into(),
                agent: agent.clone(),
                kind: kind.clone().unwrap_or_default(),
                diagnosis: attempt
                    .diagnosis
                    .as_ref()
                    .map(|d| d.summary.clone())
                    .unwrap_or_default(),
                summary: child.summary.clone(),
            };
            self.store
                .append(StreamType::Strategy, attempt_id, vec![stored.into()], &meta)
                .await?;
        }
        if let Some(d) = &attempt.diagnosis {
            for id in &d.strategies {
                let Some(s) = self.known().await?.bank.get(id).cloned() else {
                    continue;
                };
                if s.pruned
                    || Some(&s.kind) != kind.as_ref()
                    || attempt.strategy_outcomes.contains(id)
                {
                    continue;
                }
                let success = matches!((score, parent_score), (Some(c), Some(p)) if c > p);
                self.store
                    .append(
                        StreamType::Strategy,
                        id,
                        vec![
                            StrategyOutcomeRecorded {
                                strategy_id: id.clone(),
                                success,
                            }
                            .into(),
                        ],
                        &meta,
                    )
                    .await?;
                let uses = s.uses + 1;
                let rate = (s.wins + u64::from(success)) as f64 / uses as f64;
                if uses >= self.config.prune_min_uses
                    && rate < self.config.prune_below
                    && !attempt.strategy_pruned.contains(id)
                {
                    self.store
                        .append(
                            StreamType::Strategy,
                            id,
                            vec![
                                StrategyPruned {
                                    strategy_id: id.clone(),
                                    reason: format!(
                                        "win rate {:.0}% after {uses} uses",
                                        rate * 100.0
                                    ),
                                }
                                .into(),
                            ],
                            &meta,
                        )
                        .await?;
                }
            }
        }
        if let Some(started) = &attempt.started {
            self.proposer.observe(&Feedback {
                seed: started.seed,
                kind: kind.clone().unwrap_or_default(),
                improvement: score.zip(parent_score).map(|(c, p)| c - p),
            });
        }
        let finished = AttemptFinished {
            run_id: self.run_id.clone(),
            attempt_id: attempt_id.into(),
            outcome: outcome.into(),
            child: Some(version),
            score,
            reason,
            proposal_kind: kind,
        };
        self.store
            .append(
                StreamType::Run,
                &self.run_id,
                vec![finished.clone().into()],
                &meta,
            )
            .await?;
        Ok(finished)
    }

    /// A promotion candidate must hold on validation (against the best) and,
    /// when evaluation is noisy, on a second train evaluation.
    async fn confirm(
        &self,
        attempt_id: &str,
        attempt: &AttemptState,
        child: &str,
        best: &str,
        noisy: bool,
    ) -> Result<Result<String, String>, EvolveError> {
        // What the archive says now, before this step's own evaluations.
        let (child_hash, best_hash, best_val, best_score) = self
            .with_archive(|_, archive| {
                let files_of = |v: &str| archive.versions.get(v).map(|r| r.tree_hash.clone());
                (
                    files_of(child).unwrap_or_default(),
                    files_of(best).unwrap_or_default(),
                    archive
                        .versions
                        .get(best)
                        .and_then(|v| v.score_on(&self.suite.name, Split::Validation.as_str()))
                        .map(|(_, s)| s),
                    self.best_score(archive, Some(child)),
                )
            })
            .await?;
        let has_validation = self
            .suite
            .tasks
            .iter()
            .any(|t| t.split == Split::Validation);
        let child_files = self.tree(&child_hash).await?;
        let child_code = CodeDir::new(&child_files, &self.code_dirs);
        let mut notes = Vec::new();
        if has_validation {
            let child_val = self
                .evaluate(
                    Some(attempt_id),
                    child,
                    &child_code,
                    1,
                    Split::Validation,
                    &format!("{attempt_id}/validation/{child}"),
                    attempt,
                    &mut BTreeMap::new(),
                )
                .await?;
            let best_val = match best_val {
                Some(s) => Some(s),
                None => {
                    let best_files = self.tree(&best_hash).await?;
                    self.evaluate(
                        Some(attempt_id),
                        best,
                        &CodeDir::new(&best_files, &self.code_dirs),
                        1,
                        Split::Validation,
                        &format!("{attempt_id}/validation/{best}"),
                        attempt,
                        &mut BTreeMap::new(),
                    )
                    .await?
                    .score
                }
            };
            if !decide::holds_on_validation(child_val.score, best_val) {
                return Ok(Err(format!(
                    "regresses on validation ({} < {})",
                    crate::fmt_score(child_val.score),
                    crate::fmt_score(best_val)
                )));
            }
            notes.push(format!(
                "validation {} ≥ {}",
                crate::fmt_score(child_val.score),
                crate::fmt_score(best_val)
            ));
        }
        if noisy {
            let again = self
                .evaluate(
                    Some(attempt_id),
                    child,
                    &child_code,
                    self.last_stage(),
                    TRAIN,
                    &format!("{attempt_id}/train/re"),
                    attempt,
                    &mut BTreeMap::new(),
                )
                .await?;
            let best_score = best_score.unwrap_or(f64::NEG_INFINITY);
            if !again
                .score
                .is_some_and(|s| decide::beats(s, best_score, self.config.threshold))
            {
                return Ok(Err(format!(
                    "does not hold on re-evaluation ({})",
                    crate::fmt_score(again.score)
                )));
            }
            notes.push(format!("re-evaluation {}", crate::fmt_score(again.score)));
        }
        Ok(Ok(if notes.is_empty() {
            "no validation split".into()
        } else {
            notes.join("; ")
        }))
    }

    /// (wall − time in the benchmark runner) / attempts finished by this
    /// invocation. Only exact when attempts do not overlap (`--population 1`).
    fn loop_overhead(&self, state: &RunState, began: Instant) -> Option<f64> {
        if self.config.population != 1 {
            return None;
        }
        let finished = state.finished_attempts().count() as f64;
        let judging = self.judging_nanos.load(Ordering::Relaxed) as f64 / 1e6;
        let wall = began.elapsed().as_secs_f64() * 1e3;
        (finished > 0.0).then(|| ((wall - judging) / finished).max(0.0))
    }

    async fn summary(
        &self,
        state: &RunState,
        stop_reason: &str,
        began: Instant,
    ) -> Result<Summary, EvolveError> {
        self.with_archive(|_, archive| self.summarize(archive, state, stop_reason, began))
            .await
    }

    fn summarize(
        &self,
        archive: &AgentArchive,
        state: &RunState,
        stop_reason: &str,
        began: Instant,
    ) -> Summary {
        let count = |o: &str| state.finished_attempts().filter(|f| f.outcome == o).count() as u32;
        let attempts = state.finished_attempts().count() as u32;
        let promoted = count("promoted");
        let admitted = count("admitted") + promoted;
        let baseline_version = state
            .attempts
            .get("baseline")
            .and_then(|b| b.evals.values().next())
            .map(|r| r.version.clone())
            .unwrap_or_default();
        let key = dgm_projections::archive::score_key(
            &self.suite.name,
            self.last_stage(),
            TRAIN.as_str(),
        );
        let seed_row = archive.versions.get(&baseline_version);
        let (best_version, best_score) = self
            .best_version(archive, None)
            .map(|(v, s)| (v, Some(s)))
            .unwrap_or((baseline_version.clone(), None));
        let seed_score = seed_row.and_then(|r| r.scores.get(&key).copied());
        Summary {
            run_id: self.run_id.clone(),
            agent: self.config.agent.clone(),
            attempts,
            admitted,
            promoted,
            rejected: count("rejected"),
            invalid: count("invalid") + count("duplicate"),
            acceptance_rate: if attempts == 0 {
                0.0
            } else {
                admitted as f64 / attempts as f64
            },
            generations: state.last_generation().unwrap_or(0),
            seed_version: baseline_version.clone(),
            seed_score,
            best_metrics: archive
                .versions
                .get(&best_version)
                .and_then(|r| r.metrics.get(&key).cloned())
                .unwrap_or_default(),
            seed_metrics: seed_row
                .and_then(|r| r.metrics.get(&key).cloned())
                .unwrap_or_default(),
            gain: best_score.zip(seed_score).map(|(b, s)| b - s),
            best_version,
            best_score,
            stop_reason: stop_reason.into(),
            elapsed_secs: began.elapsed().as_secs_f64(),
            loop_ms_per_attempt: self.loop_overhead(state, began),
        }
    }
}

/// What [`Evolution::proposal_context`] gathers.
struct ProposalContext {
    failures: Vec<FailureExample>,
    strategies: Vec<StrategyNote>,
    lineage: Vec<AttemptNote>,
    parent_score: Option<f64>,
}

fn categories(counts: &BTreeMap<String, u64>) -> Vec<FailureCategory> {
    let mut list: Vec<FailureCategory> = counts
        .iter()
        .map(|(c, n)| FailureCategory {
            category: c.clone(),
            count: *n,
        })
        .collect();
    list.sort_by(|a, b| b.count.cmp(&a.count).then(a.category.cmp(&b.category)));
    list
}
