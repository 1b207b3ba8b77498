//! One module per command family; `run` dispatches.

pub mod agents;
pub mod bench;
pub mod evolve;
pub mod history;
pub mod memory;
pub mod projections;
pub mod sandbox;

use crate::cli::{Cli, Command};
use crate::context::Context;

/// Runs the command; returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    // actix's System owns the runtime (a multi-threaded tokio one), so actors
    // and plain async code share it. Never nest it inside another runtime.
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the async runtime: {e}"))
    });
    system.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let store = cli.store.as_deref();
    match cli.command {
        Command::Init(flag) => {
            let ctx = Context::open(store, flag.json).await?;
            let head = ctx.store.head().await?;
            let url = ctx.store.url().redacted();
            if ctx.json {
                crate::output::json(&serde_json::json!({
                    "store": url, "schema_version": dgm_events::SCHEMA_VERSION, "head": head }))?;
            } else {
                println!(
                    "store ready: {url} (schema v{}, {head} events)",
                    dgm_events::SCHEMA_VERSION
                );
            }
            Ok(0)
        }
        Command::Agent(crate::cli::AgentCommand::Add { dir, json }) => {
            let ctx = Context::open(store, json.json).await?;
            agents::add(&ctx, &dir).await
        }
        Command::Agents(flag) => agents::list(&Context::open(store, flag.json).await?).await,
        Command::Archive { agent, as_of, json } => {
            agents::archive(&Context::open(store, json.json).await?, &agent, as_of).await
        }
        Command::History {
            agent,
            from,
            to,
            json,
        } => {
            history::show(
                &Context::open(store, json.json).await?,
                agent.as_deref(),
                from,
                to,
            )
            .await
        }
        Command::Rollback {
            agent,
            to_version,
            to_event,
            reason,
            json,
        } => {
            let ctx = Context::open(store, json.json).await?;
            agents::rollback(&ctx, &agent, to_version.as_deref(), to_event, &reason).await
        }
        Command::Checkout {
            agent,
            version,
            out,
        } => agents::checkout(&Context::open(store, false).await?, &agent, &version, &out).await,
        Command::Projections(crate::cli::ProjectionsCommand::Rebuild { check, json }) => {
            projections::rebuild(&Context::open(store, json.json).await?, check).await
        }
        Command::Bench(args) => bench::bench(Context::open(store, args.json).await?, args).await,
        Command::Evolve(args) => evolve::evolve(Context::open(store, args.json).await?, args).await,
        Command::Resume { run, json } => {
            evolve::resume(Context::open(store, json.json).await?, &run, json.json).await
        }
        Command::Runs(flag) => evolve::runs(&Context::open(store, flag.json).await?).await,
        Command::Run(crate::cli::RunCommand::Show { run, json }) => {
            evolve::show(&Context::open(store, json.json).await?, &run).await
        }
        Command::Memory(crate::cli::MemoryCommand::Strategies { agent, json }) => {
            memory::strategies(&Context::open(store, json.json).await?, agent.as_deref()).await
        }
        Command::Memory(crate::cli::MemoryCommand::Trajectories {
            outcome,
            agent,
            version,
            category,
            tag,
            limit,
            json,
        }) => {
            let filter = dgm_projections::TrajectoryFilter {
                agent,
                version,
                outcome,
                error_category: category,
                tag,
            };
            memory::trajectories(&Context::open(store, json.json).await?, filter, limit).await
        }
        Command::Sandbox(cmd) => {
            // Executions are recorded like every other step.
            let ctx = Context::open(store, false).await?;
            let store = std::sync::Arc::new(ctx.store);
            let listener = crate::sandbox_events::EventListener::new(
                store.clone(),
                dgm_events::Metadata::new("sandbox-supervisor"),
            );
            let code = sandbox::run(cmd, listener.clone()).await;
            listener.flush().await;
            code
        }
    }
}
