//! `dgm evolve`, `dgm resume`, `dgm runs`, `dgm run show`: the Darwin loop
//! from the command line, one actor per agent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use anyhow::{Context as _, bail};
use dgm_events::{AttemptFinished, Metadata, Store};
use dgm_evolve::actor::{AgentActor, Evolve, Stop};
use dgm_evolve::builder::{ensure_registered, manifest_suite};
use dgm_evolve::{Evolution, EvolveConfig, Observer, Summary};
use dgm_memory::{MemoryActor, MemoryEngine};
use dgm_projections::projector::catch_up;
use dgm_projections::{Archive, Runs};
use dgm_propose::{MutateConfig, MutateProposer, Proposer};
use dgm_sandbox::supervisor::Supervisor;
use indicatif::{ProgressBar, ProgressStyle};

use crate::context::Context;
use crate::output;
use crate::sandbox_events::EventListener;

/// Options of `dgm evolve`.
#[derive(Debug, clap::Args)]
pub struct EvolveArgs {
    /// Agent directories (holding agent.toml) or registered agent names; several evolve at once
    #[arg(required = true, value_name = "DIR|AGENT")]
    pub targets: Vec<String>,
    /// The suite directory [default: the one agent.toml names]
    #[arg(long, value_name = "DIR")]
    pub suite: Option<PathBuf>,
    #[arg(long, default_value_t = 50)]
    pub generations: u32,
    /// Attempts per generation, in flight together
    #[arg(long, default_value_t = 5)]
    pub population: u32,
    /// Promotion needs train score > best × (1 + threshold)
    #[arg(long, default_value_t = 0.01)]
    pub threshold: f64,
    /// Parent selection: dgm, fitness, hgm, greedy or random
    #[arg(long, default_value = "dgm")]
    pub selection: String,
    /// DGM selection's sigmoid steepness λ
    #[arg(long, default_value_t = dgm_evolve::selection::DGM_LAMBDA)]
    pub lambda: f64,
    /// DGM selection's sigmoid midpoint α0
    #[arg(long, default_value_t = dgm_evolve::selection::DGM_ALPHA0)]
    pub alpha0: f64,
    /// How children are proposed: mutate (offline AST mutation and crossover),
    /// llm (an OpenAI-compatible server) or self (the agent's own improve entry)
    #[arg(long, default_value = "mutate")]
    pub proposer: String,
    #[command(flatten)]
    pub llm: Box<LlmArgs>,
    /// Seed for every random choice; the same seed gives the same decisions
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop after this many attempts
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Stop after this long (e.g. 90s, 10m, 2h); resumable
    #[arg(long, value_parser = parse_duration)]
    pub time_limit: Option<Duration>,
    /// Stop after this many generations without a promotion
    #[arg(long)]
    pub plateau: Option<u32>,
    /// Tasks of one evaluation in flight at once [default: cores]
    #[arg(long)]
    pub parallelism: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

/// Options of the `llm` and `self` proposers (see docs/llm.md).
#[derive(Debug, Clone, clap::Args)]
pub struct LlmArgs {
    /// The OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp, OpenRouter)
    #[arg(long, env = "OPENAI_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,
    /// The environment variable that holds the API key (the key itself is never a flag)
    #[arg(long, default_value = "OPENAI_API_KEY", value_name = "VAR")]
    pub api_key_env: String,
    /// A model, repeatable (or comma-separated): NAME or NAME@IN/OUT with USD per million prompt/completion tokens
    #[arg(
        long = "model",
        env = "DGM_LLM_MODELS",
        value_delimiter = ',',
        value_name = "NAME[@IN/OUT]"
    )]
    pub models: Vec<String>,
    /// The model that writes diagnoses [default: the first model]
    #[arg(long, value_name = "NAME")]
    pub diagnosis_model: Option<String>,
    /// Skip the model's DGM-style diagnosis before each proposal
    #[arg(long)]
    pub no_llm_diagnosis: bool,
    /// Rounds of feeding an edit that does not apply back to the model
    #[arg(long, default_value_t = 2)]
    pub fix_rounds: u32,
    /// A directory whose system.md / propose.md / fix.md / diagnose*.md replace the default prompts
    #[arg(long, value_name = "DIR")]
    pub prompt_dir: Option<PathBuf>,
    /// Limit on one model call (e.g. 60s)
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub llm_timeout: Duration,
    /// Retries of a call after 429, 5xx, a timeout or a garbled reply
    #[arg(long, default_value_t = 4)]
    pub llm_retries: u32,
    /// First backoff between retries; it doubles each time
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub llm_backoff: Duration,
    /// Stop the run once its model calls used this many tokens
    #[arg(long, value_name = "TOKENS")]
    pub max_tokens: Option<u64>,
    /// Stop the run once its model calls cost this many dollars
    #[arg(long, value_name = "USD")]
    pub max_cost: Option<f64>,
    /// The self proposer's entry point, run in a copy of the agent's code
    #[arg(long, default_value = "python3 improve.py", value_name = "COMMAND")]
    pub improve_command: String,
    /// Limit on one run of the improve entry
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub improve_timeout: Duration,
}

impl LlmArgs {
    /// What a run records to rebuild its proposer on resume (no key: only the variable's name).
    fn settings(&self) -> anyhow::Result<serde_json::Value> {
        let prompt_dir = match &self.prompt_dir {
            Some(d) => Some(
                std::fs::canonicalize(d)
                    .with_context(|| format!("prompt directory {}", d.display()))?,
            ),
            None => None,
        };
        Ok(serde_json::json!({
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "models": self.models,
            "diagnosis_model": self.diagnosis_model,
            "diagnose": !self.no_llm_diagnosis,
            "fix_rounds": self.fix_rounds,
            "prompt_dir": prompt_dir,
            "timeout_ms": self.llm_timeout.as_millis() as u64,
            "retries": self.llm_retries,
            "backoff_ms": self.llm_backoff.as_millis() as u64,
            "improve_command": self.improve_command,
            "improve_timeout_ms": self.improve_timeout.as_millis() as u64,
        }))
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30s, 10m or 2h"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// The proposer a run names, built from its recorded settings.
fn proposer(
    name: &str,
    config: &EvolveConfig,
    executor: &Arc<Supervisor>,
) -> anyhow::Result<Arc<dyn Proposer>> {
    let settings = &config.proposer_settings;
    let text = |k: &str| settings.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let number = |k: &str| settings.get(k).and_then(|v| v.as_u64());
    let base_url = text("base_url")
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| dgm_llm::ClientConfig::DEFAULT_BASE_URL.to_string());
    let key_var = text("api_key_env").unwrap_or_else(|| "OPENAI_API_KEY".into());
    let key = std::env::var(&key_var).unwrap_or_default();
    let models: Vec<String> = settings
        .get("models")
        .and_then(|m| m.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    match name {
        "mutate" => Ok(Arc::new(MutateProposer::new(MutateConfig::default()))),
        "llm" => {
            let models = models
                .iter()
                .map(|m| dgm_llm::ModelSpec::parse(m))
                .collect::<Result<Vec<_>, _>>()?;
            if key.is_empty() && base_url == dgm_llm::ClientConfig::DEFAULT_BASE_URL {
                bail!(
                    "--proposer llm needs an API key in ${key_var} (or --base-url / OPENAI_BASE_URL for a local server)"
                );
            }
            let mut llm = dgm_llm::LlmConfig::new(base_url, dgm_llm::ApiKey::new(key), models);
            llm.diagnosis_model = text("diagnosis_model");
            llm.diagnose = settings
                .get("diagnose")
                .and_then(|v| v.as_bool())
                .unwrap_or(true);
            llm.fix_rounds = number("fix_rounds").unwrap_or(2) as u32;
            if let Some(ms) = number("timeout_ms") {
                llm.client.timeout = Duration::from_millis(ms.max(1));
            }
            if let Some(n) = number("retries") {
                llm.client.max_retries = n as u32;
            }
            if let Some(ms) = number("backoff_ms") {
                llm.client.backoff = Duration::from_millis(ms);
            }
            llm.budget = dgm_llm::BudgetLimits {
                max_tokens: config.max_llm_tokens,
                max_cost_usd: config.max_llm_cost_usd,
            };
            llm.templates = dgm_llm::Templates::load(text("prompt_dir").as_deref().map(Path::new))?;
            Ok(Arc::new(dgm_llm::LlmProposer::new(llm)?))
        }
        "self" => {
            let mut cfg = dgm_llm::SelfConfig::default();
            if let Some(c) = text("improve_command") {
                cfg.command = c.split_whitespace().map(str::to_string).collect();
            }
            if cfg.command.is_empty() {
                bail!("--improve-command is empty");
            }
            if let Some(ms) = number("improve_timeout_ms") {
                cfg.limits.timeout = Duration::from_millis(ms.max(1));
            }
            // The improve entry may call a model: it gets the server, the
            // models and the key in its environment, and the network.
            if let Some(url) = text("base_url").filter(|u| !u.is_empty()) {
                cfg.env.insert("OPENAI_BASE_URL".into(), url);
                cfg.limits.network = true;
            }
            if !key.is_empty() {
                cfg.env.insert("OPENAI_API_KEY".into(), key);
                cfg.limits.network = true;
            }
            if let Some(first) = models.first() {
                let name = dgm_llm::ModelSpec::parse(first)?.name;
                cfg.env.insert("OPENAI_MODEL".into(), name);
            }
            Ok(Arc::new(dgm_llm::SelfProposer::new(executor.clone(), cfg)))
        }
        other => bail!("unknown proposer `{other}` (available: mutate, llm, self)"),
    }
}

/// Draws a progress bar per generation with the live best score.
struct Progress {
    agent: String,
    bar: std::sync::Mutex<Option<ProgressBar>>,
    quiet: bool,
}

impl Observer for Progress {
    fn generation_started(&self, generation: u32, total: u32, attempts: u32) {
        if self.quiet {
            return;
        }
        let bar = ProgressBar::new(attempts as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:20}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{} gen {generation}/{total}", self.agent));
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(bar);
        }
    }

    fn attempt_finished(&self, f: &AttemptFinished, best: Option<f64>) {
        if self.quiet {
            return;
        }
        if let Ok(b) = self.bar.lock()
            && let Some(bar) = b.as_ref()
        {
            bar.set_message(format!(
                "best {} · last: {} {}",
                dgm_evolve::fmt_score(best),
                f.outcome,
                dgm_evolve::fmt_score(f.score)
            ));
            bar.inc(1);
        }
    }

    fn generation_finished(&self, generation: u32, best: Option<f64>) {
        if self.quiet {
            return;
        }
        if let Ok(mut b) = self.bar.lock()
            && let Some(bar) = b.take()
        {
            bar.finish_and_clear();
        }
        eprintln!(
            "{}: generation {generation} done, best train score {}",
            self.agent,
            dgm_evolve::fmt_score(best)
        );
    }
}

/// Resolves a target to a registered agent and its suite.
async fn resolve(
    store: &Store,
    target: &str,
    suite: Option<&Path>,
) -> anyhow::Result<(String, PathBuf)> {
    let dir = Path::new(target);
    let (agent, suite_from_manifest) = if dir.join("agent.toml").exists() {
        let (name, new) = ensure_registered(store, dir, "cli").await?;
        if let Some(v) = new {
            eprintln!("registered agent `{name}` (seed version {v})");
        }
        let manifest = dgm_events::AgentManifest::load(dir)?;
        (
            name,
            manifest_suite(&manifest, Some(&dir.display().to_string())),
        )
    } else {
        let archive = catch_up::<Archive>(store).await?;
        let Some(a) = archive.get(target) else {
            bail!("`{target}` is neither a directory with agent.toml nor a registered agent");
        };
        (
            a.agent.clone(),
            manifest_suite(&a.manifest, a.source.as_deref()),
        )
    };
    let suite = match suite.map(Path::to_path_buf).or(suite_from_manifest) {
        Some(s) => s,
        None => bail!("agent `{agent}` names no suite; give --suite DIR"),
    };
    let suite =
        std::fs::canonicalize(&suite).with_context(|| format!("suite {}", suite.display()))?;
    Ok((agent, suite))
}

pub async fn evolve(ctx: Context, args: EvolveArgs) -> anyhow::Result<i32> {
    let store = Arc::new(ctx.store);
    let mut evolutions = Vec::new();
    let listener = EventListener::new(store.clone(), Metadata::new("sandbox-supervisor"));
    let executor = Arc::new(Supervisor::native(listener.clone())?);
    for target in &args.targets {
        let (agent, suite_dir) = resolve(&store, target, args.suite.as_deref()).await?;
        let mut config = EvolveConfig::new(agent, suite_dir);
        config.generations = args.generations;
        config.population = args.population;
        config.threshold = args.threshold;
        config.selection = args.selection.clone();
        config.lambda = args.lambda;
        config.alpha0 = args.alpha0;
        config.proposer = args.proposer.clone();
        config.seed = args.seed;
        config.max_attempts = args.max_attempts;
        config.time_limit_secs = args.time_limit.map(|d| d.as_secs().max(1));
        config.plateau = args.plateau;
        if let Some(p) = args.parallelism {
            config.parallelism = p;
        }
        config.max_llm_tokens = args.llm.max_tokens;
        config.max_llm_cost_usd = args.llm.max_cost;
        config.proposer_settings = args.llm.settings()?;
        let proposer = proposer(&args.proposer, &config, &executor)?;
        let evolution = Evolution::new(store.clone(), executor.clone(), proposer, config)?;
        evolutions.push(evolution);
    }
    let code = drive(&store, evolutions, args.json).await;
    listener.flush().await;
    code
}

pub async fn resume(ctx: Context, run_id: &str, json: bool) -> anyhow::Result<i32> {
    let store = Arc::new(ctx.store);
    let listener = EventListener::new(store.clone(), Metadata::new("sandbox-supervisor"));
    let executor = Arc::new(Supervisor::native(listener.clone())?);
    let runs = catch_up::<Runs>(&store).await?;
    let run = runs
        .get(run_id)
        .ok_or_else(|| anyhow::anyhow!("run `{run_id}` not found (see `dgm runs`)"))?;
    let config: EvolveConfig = serde_json::from_value(run.config.clone())
        .map_err(|e| anyhow::anyhow!("run `{run_id}` has an unreadable config: {e}"))?;
    let proposer = proposer(&config.proposer, &config, &executor)?;
    let evolution = Evolution::resume(store.clone(), executor, proposer, run_id).await?;
    eprintln!("resuming {run_id} ({} events recorded so far)", run.events);
    let code = drive(&store, vec![evolution], json).await;
    listener.flush().await;
    code
}

/// Starts one actor per evolution, stops them all on Ctrl-C, prints summaries.
async fn drive(store: &Arc<Store>, evolutions: Vec<Evolution>, json: bool) -> anyhow::Result<i32> {
    let started = std::time::Instant::now();
    // One memory actor records every run's trajectories and strategies.
    let memory = MemoryActor::new(MemoryEngine::new(store.clone())).start();
    let mut actors = Vec::new();
    for evolution in evolutions {
        let evolution = evolution.with_memory(Arc::new(memory.clone()));
        let agent = evolution.config().agent.clone();
        eprintln!(
            "evolving `{agent}` as {} (selection {}, seed {})",
            evolution.run_id(),
            evolution.config().selection,
            evolution.config().seed
        );
        let observer = Arc::new(Progress {
            agent: agent.clone(),
            bar: Default::default(),
            quiet: json,
        });
        actors.push((agent, AgentActor::new(evolution, observer).start()));
    }
    let stoppers: Vec<_> = actors.iter().map(|(_, a)| a.clone()).collect();
    actix::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\nstopping after the attempts in flight (Ctrl-C again to abort; `dgm resume` continues)"
            );
            for a in &stoppers {
                a.do_send(Stop);
            }
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let results = futures::future::join_all(actors.iter().map(|(_, a)| a.send(Evolve))).await;
    let mut summaries: Vec<Summary> = Vec::new();
    let mut failed = false;
    for ((agent, _), result) in actors.iter().zip(results) {
        match result {
            Ok(Ok(summary)) => summaries.push(summary),
            Ok(Err(e)) => {
                eprintln!("dgm: evolving `{agent}` failed: {e}");
                failed = true;
            }
            Err(e) => {
                eprintln!("dgm: the actor for `{agent}` died: {e}");
                failed = true;
            }
        }
    }
    if json {
        output::json(&summaries)?;
    } else {
        for s in &summaries {
            print_summary(s);
        }
        eprintln!("took {:.1?}", started.elapsed());
    }
    let _ = store;
    Ok(if failed { 1 } else { 0 })
}

fn metric(m: &std::collections::BTreeMap<String, f64>, k: &str) -> Option<f64> {
    m.get(k).copied()
}

fn print_summary(s: &Summary) {
    println!("run {} of `{}` ({})", s.run_id, s.agent, s.stop_reason);
    println!(
        "  attempts {}  admitted {}  promoted {}  rejected {}  invalid {}  acceptance rate {:.0}%",
        s.attempts,
        s.admitted,
        s.promoted,
        s.rejected,
        s.invalid,
        s.acceptance_rate * 100.0
    );
    println!(
        "  seed {} score {}  →  best {} score {}  (gain {})",
        s.seed_version,
        dgm_evolve::fmt_score(s.seed_score),
        s.best_version,
        dgm_evolve::fmt_score(s.best_score),
        s.gain
            .map(|g| format!("{g:+.4}"))
            .unwrap_or_else(|| "-".into())
    );
    if let (Some(best), Some(ff), Some(bf)) = (
        metric(&s.best_metrics, "excess_pct"),
        metric(&s.best_metrics, "first_fit_excess_pct"),
        metric(&s.best_metrics, "best_fit_excess_pct"),
    ) {
        println!(
            "  bin packing excess over L1 (train): best {best:.2}%  vs First Fit {ff:.2}%  Best Fit {bf:.2}%  → {:.2} points beyond First Fit",
            ff - best
        );
    }
    match s.loop_ms_per_attempt {
        Some(ms) => println!(
            "  time {:.1}s (loop's own time {ms:.1} ms per attempt)",
            s.elapsed_secs
        ),
        None => println!("  time {:.1}s", s.elapsed_secs),
    }
}

pub async fn runs(ctx: &Context) -> anyhow::Result<i32> {
    let runs = catch_up::<Runs>(&ctx.store).await?;
    if ctx.json {
        output::json(&runs.values().collect::<Vec<_>>())?;
        return Ok(0);
    }
    if runs.is_empty() {
        println!("no runs yet: start one with `dgm evolve DIR`");
        return Ok(0);
    }
    let mut list: Vec<_> = runs.values().collect();
    list.sort_by_key(|r| r.started_position);
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            let best = r
                .summary
                .as_ref()
                .and_then(|s| s.get("best_score"))
                .and_then(|v| v.as_f64());
            vec![
                r.run_id.clone(),
                r.agent.clone(),
                r.status.clone(),
                r.started_at.format("%Y-%m-%d %H:%M").to_string(),
                r.events.to_string(),
                dgm_evolve::fmt_score(best),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["RUN", "AGENT", "STATUS", "STARTED (UTC)", "EVENTS", "BEST"],
            &rows
        )
    );
    Ok(0)
}

pub async fn show(ctx: &Context, run_id: &str) -> anyhow::Result<i32> {
    let runs = catch_up::<Runs>(&ctx.store).await?;
    let run = runs
        .get(run_id)
        .ok_or_else(|| anyhow::anyhow!("run `{run_id}` not found (see `dgm runs`)"))?;
    let state = dgm_evolve::run_state::RunState::load(&ctx.store, run_id).await?;
    let mut attempts: Vec<_> = state
        .attempts
        .iter()
        .filter(|(_, a)| a.started.is_some())
        .collect();
    attempts.sort_by_key(|(_, a)| a.started.as_ref().map(|s| (s.generation, s.index)));
    if ctx.json {
        let list: Vec<_> = attempts
            .iter()
            .map(|(id, a)| serde_json::json!({"attempt": id, "started": a.started, "diagnosis": a.diagnosis, "child": a.child.as_ref().map(|c| &c.version), "finished": a.finished}))
            .collect();
        output::json(&serde_json::json!({"run": run, "attempts": list}))?;
        return Ok(0);
    }
    println!(
        "run {} of `{}` on {} — {}",
        run.run_id, run.agent, run.suite, run.status
    );
    if let Some(e) = &run.error {
        println!("error: {e}");
    }
    let rows: Vec<Vec<String>> = attempts
        .iter()
        .map(|(_, a)| {
            let s = a.started.as_ref();
            let f = a.finished.as_ref();
            vec![
                s.map(|s| format!("{}.{}", s.generation, s.index))
                    .unwrap_or_default(),
                s.map(|s| s.parent.clone()).unwrap_or_default(),
                a.child
                    .as_ref()
                    .map(|c| c.version.clone())
                    .unwrap_or_else(|| "-".into()),
                f.map(|f| f.outcome.clone())
                    .unwrap_or_else(|| "in flight".into()),
                dgm_evolve::fmt_score(f.and_then(|f| f.score)),
                f.map(|f| f.reason.chars().take(90).collect())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["GEN.#", "PARENT", "CHILD", "OUTCOME", "SCORE", "REASON"],
            &rows
        )
    );
    if let Some(summary) = &run.summary
        && let Ok(s) = serde_json::from_value::<Summary>(summary.clone())
    {
        print_summary(&s);
    }
    Ok(0)
}
