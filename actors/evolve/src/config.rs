//! A run's configuration: recorded whole in `RunStarted`, so `dgm resume`
//! continues with exactly what the run began with.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::selection::Strategy;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvolveConfig {
    pub agent: String,
    /// The suite's directory (absolute).
    pub suite_dir: PathBuf,
    pub generations: u32,
    /// Attempts per generation, in flight together.
    pub population: u32,
    /// Promotion needs the child's train score above best × (1 + threshold).
    pub threshold: f64,
    /// `dgm`, `fitness`, `hgm`, `greedy` or `random`.
    pub selection: String,
    pub lambda: f64,
    pub alpha0: f64,
    pub proposer: String,
    pub seed: u64,
    pub max_attempts: Option<u32>,
    pub time_limit_secs: Option<u64>,
    /// Stop after this many generations without a promotion.
    pub plateau: Option<u32>,
    /// Tasks of one evaluation in flight at once.
    pub parallelism: usize,
    /// Share of attempts that cross the parent with a second archive version.
    pub crossover_rate: f64,
    /// A strategy is pruned once used this often with a win rate below `prune_below`.
    pub prune_min_uses: u64,
    pub prune_below: f64,
    /// Stop once this run's model calls used this many tokens (prompt + completion).
    #[serde(default)]
    pub max_llm_tokens: Option<u64>,
    /// Stop once this run's model calls cost this many dollars.
    #[serde(default)]
    pub max_llm_cost_usd: Option<f64>,
    /// The proposer's own settings (`llm`: base URL, models, prompts; never a
    /// key), recorded so `dgm resume` rebuilds the same proposer.
    #[serde(default)]
    pub proposer_settings: serde_json::Value,
}

impl EvolveConfig {
    pub fn new(agent: impl Into<String>, suite_dir: impl Into<PathBuf>) -> Self {
        Self {
            agent: agent.into(),
            suite_dir: suite_dir.into(),
            generations: 50,
            population: 5,
            threshold: 0.01,
            selection: "dgm".into(),
            lambda: crate::selection::DGM_LAMBDA,
            alpha0: crate::selection::DGM_ALPHA0,
            proposer: "mutate".into(),
            seed: 0,
            max_attempts: None,
            time_limit_secs: None,
            plateau: None,
            parallelism: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            crossover_rate: 0.2,
            prune_min_uses: 5,
            prune_below: 0.4,
            max_llm_tokens: None,
            max_llm_cost_usd: None,
            proposer_settings: serde_json::Value::Null,
        }
    }

    /// The selection strategy with this run's parameters.
    pub fn strategy(&self) -> Result<Strategy, String> {
        let strategy: Strategy = self.selection.parse().map_err(|e| format!("{e}"))?;
        Ok(match strategy {
            Strategy::Dgm { .. } => Strategy::Dgm {
                lambda: self.lambda,
                alpha0: self.alpha0,
            },
            other => other,
        })
    }
}
