//! The command line, as clap sees it. Every command has `--help`; every
//! read command has `--json`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "dgm",
    version,
    about = "A Darwin Gödel Machine: agents that improve their own code, every step an immutable event",
    long_about = "A Darwin Gödel Machine: agents that improve their own code.\n\n\
        Every step is an event in one append-only log (SQLite by default, PostgreSQL with \
        --store postgres://…). Everything dgm shows you — archive, history, memory — is \
        derived from that log, so any run can be audited, queried as of any event, and \
        rolled back."
)]
pub struct Cli {
    /// Event store: sqlite://PATH or postgres://USER@HOST/DB [default: sqlite://.dgm/dgm.db]
    #[arg(long, global = true, env = "DGM_STORE", value_name = "URL")]
    pub store: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone, Copy, Default)]
pub struct JsonFlag {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the event store (if needed) and apply migrations
    Init(JsonFlag),
    /// Manage agents
    #[command(subcommand)]
    Agent(AgentCommand),
    /// List registered agents
    Agents(JsonFlag),
    /// Show an agent's archive: every version, its lineage, scores and status
    Archive {
        /// The agent's name
        agent: String,
        /// Show the archive as it was right after event N
        #[arg(long, value_name = "N")]
        as_of: Option<u64>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show the event log in position order
    History {
        /// Only events about this agent (its versions, runs and evaluations)
        #[arg(long)]
        agent: Option<String>,
        /// First position to show
        #[arg(long, value_name = "N")]
        from: Option<u64>,
        /// Last position to show
        #[arg(long, value_name = "N")]
        to: Option<u64>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Make an earlier version active again (appends an event; nothing is deleted)
    #[command(group(clap::ArgGroup::new("target").required(true).args(["to_version", "to_event"])))]
    Rollback {
        agent: String,
        /// The version to make active (a unique prefix is enough)
        #[arg(long, value_name = "V")]
        to_version: Option<String>,
        /// Make active the version that was active right after event N
        #[arg(long, value_name = "N")]
        to_event: Option<u64>,
        /// Why (kept in the log)
        #[arg(long, default_value = "manual rollback")]
        reason: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Write a version's files to a directory
    Checkout {
        agent: String,
        /// A version id (or unique prefix), `active`, or `best`
        version: String,
        /// Where to write the files (must not exist or be empty)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Maintain the read models derived from the log
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Run untrusted code in the sandbox
    #[command(subcommand)]
    Sandbox(crate::commands::sandbox::SandboxCommand),
    /// Score a directory or a stored version on a suite
    Bench(crate::commands::bench::BenchArgs),
    /// Evolve agents: select, diagnose, propose, validate, evaluate, decide, remember
    Evolve(crate::commands::evolve::EvolveArgs),
    /// Continue an interrupted or killed run from its events
    Resume {
        run: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List evolution runs
    Runs(JsonFlag),
    /// Inspect one run
    #[command(subcommand)]
    Run(RunCommand),
    /// The ReasoningBank and the replay buffer
    #[command(subcommand)]
    Memory(MemoryCommand),
}

#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// A run's attempts, decisions and summary
    Show {
        run: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// Strategies with their uses, wins and win rates
    Strategies {
        #[arg(long)]
        agent: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Trajectories in the replay buffer (newest last)
    Trajectories {
        /// success or failure
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        version: Option<String>,
        /// timeout, crash, wrong_answer, syntax_error, out_of_memory, invalid_score, …
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        /// Show at most this many (the newest)
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Register an agent from a directory holding agent.toml, storing its seed version
    Add {
        dir: PathBuf,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Rebuild every view from position 0
    Rebuild {
        /// Rebuild aside and compare with the live views; exit 1 on any difference
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
}
