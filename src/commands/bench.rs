//! `dgm bench`: score a directory or a stored version on a suite, with a
//! progress bar and a table of metrics; results recorded as events.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use dgm_bench::{
    Progress, RunOptions, RunSpec, Split, StageReport, load_suite, render_table, run_stage,
};
use dgm_events::agent::write_dir_files;
use dgm_events::{AgentManifest, Metadata};
use dgm_evolve::builder::manifest_suite;
use dgm_memory::{Subject, record_stage};
use dgm_sandbox::supervisor::Supervisor;
use indicatif::{ProgressBar, ProgressStyle};

use crate::context::Context;
use crate::output;
use crate::sandbox_events::EventListener;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A directory (an agent with agent.toml, or an OpenEvolve-style program dir), AGENT@VERSION or AGENT@best
    #[arg(value_name = "DIR|AGENT@VERSION")]
    pub target: String,
    /// The suite [default: the agent's own, or the directory itself]
    #[arg(long, value_name = "DIR")]
    pub suite: Option<PathBuf>,
    /// Which stage to run: a number (1 = first) or `all` (in order, gates applied)
    #[arg(long, default_value = "all")]
    pub stage: String,
    #[arg(long, default_value = "train", value_parser = parse_split)]
    pub split: Split,
    /// Tasks in flight at once [default: cores]
    #[arg(long)]
    pub parallelism: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

fn parse_split(s: &str) -> Result<Split, String> {
    s.parse()
}

pub async fn bench(ctx: Context, args: BenchArgs) -> anyhow::Result<i32> {
    let store = std::sync::Arc::new(ctx.store);
    let code_dir = tempfile::Builder::new().prefix("dgm-bench-").tempdir()?;
    // Resolve what runs, its command, and the default suite.
    let (spec, default_suite, subject): (RunSpec, Option<PathBuf>, Option<(String, String)>) =
        if let Some((agent, which)) = args
            .target
            .split_once('@')
            .filter(|_| !Path::new(&args.target).exists())
        {
            let ctx_view = Context {
                store: dgm_events::Store::open(store.url()).await?,
                json: false,
            };
            let archive = crate::commands::agents::load_agent(&ctx_view, agent, None).await?;
            let version = crate::commands::agents::resolve_version(&archive, which)?;
            let files = store.get_tree(&version.tree_hash).await?;
            write_dir_files(code_dir.path(), &files)?;
            (
                RunSpec {
                    code_dir: code_dir.path().to_path_buf(),
                    command: archive.manifest.run.clone(),
                    env: Default::default(),
                },
                manifest_suite(&archive.manifest, archive.source.as_deref()),
                Some((agent.to_string(), version.version.clone())),
            )
        } else {
            let dir = Path::new(&args.target);
            if !dir.is_dir() {
                bail!("`{}` is neither a directory nor AGENT@VERSION", args.target);
            }
            let dir = std::fs::canonicalize(dir)?;
            if dir.join(AgentManifest::FILE).exists() {
                let manifest = AgentManifest::load(&dir)?;
                (
                    RunSpec {
                        code_dir: dir.clone(),
                        command: manifest.run.clone(),
                        env: Default::default(),
                    },
                    manifest_suite(&manifest, Some(&dir.display().to_string())),
                    None,
                )
            } else {
                // An OpenEvolve-style directory: the suite supplies the command.
                (
                    RunSpec {
                        code_dir: dir.clone(),
                        command: Vec::new(),
                        env: Default::default(),
                    },
                    Some(dir.clone()),
                    None,
                )
            }
        };
    let suite_dir = args
        .suite
        .clone()
        .or(default_suite)
        .ok_or_else(|| anyhow::anyhow!("no suite: give --suite DIR"))?;
    let suite =
        load_suite(&suite_dir).with_context(|| format!("loading suite {}", suite_dir.display()))?;
    let stages: Vec<(u32, dgm_bench::Stage)> = match args.stage.as_str() {
        "all" => suite
            .stages
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, s)| (i as u32 + 1, s))
            .collect(),
        n => {
            let n: usize = n
                .parse()
                .map_err(|_| anyhow::anyhow!("--stage must be a number or `all`, not `{n}`"))?;
            match suite.stages.get(n.wrapping_sub(1)) {
                Some(s) => vec![(n as u32, s.clone())],
                None => bail!(
                    "suite `{}` has {} stage(s); there is no stage {n}",
                    suite.name,
                    suite.stages.len()
                ),
            }
        }
    };
    let listener = EventListener::new(store.clone(), Metadata::new("sandbox-supervisor"));
    let executor = Supervisor::native(listener.clone())?;
    let opts = RunOptions {
        parallelism: args.parallelism.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
        docker_available: false,
    };
    let meta = Metadata::new("cli");
    let mut reports: Vec<StageReport> = Vec::new();
    for (number, stage) in &stages {
        let total = stage.select(&suite, args.split).len() as u64;
        let bar = if args.json {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total)
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:25}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{} stage {number} ({})", suite.name, stage.name));
        let progress = |p: &Progress| {
            bar.set_message(format!("{} {:?}", p.task_id, p.outcome));
            bar.inc(1);
        };
        let report = run_stage(
            &suite, stage, args.split, &spec, &executor, &opts, &progress,
        )
        .await?;
        bar.finish_and_clear();
        let eval_id = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let subject = Subject {
            agent: subject.as_ref().map(|(a, _)| a.as_str()),
            version: subject.as_ref().map(|(_, v)| v.as_str()),
            stage: *number,
        };
        record_stage(&store, &meta, &eval_id, &subject, &report).await?;
        let passed = report.gate_passed();
        if !args.json {
            print!("{}", render_table(&report));
        }
        reports.push(report);
        if !passed && args.stage == "all" {
            if !args.json {
                println!("stopped: the gate after stage {number} did not pass");
            }
            break;
        }
    }
    listener.flush().await;
    if args.json {
        let list: Vec<_> = reports
            .iter()
            .map(|r| serde_json::json!({"suite": r.suite, "stage": r.stage, "split": r.split, "score": r.score, "metrics": r.metrics(), "perf": r.perf_metrics(), "gate": r.gate}))
            .collect();
        output::json(&list)?;
    }
    Ok(0)
}
