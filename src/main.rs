//! `dgm`: the command line and composition root.
//!
//! Parses the command, opens the event store, wires engines and actors, and
//! turns every error into one line on stderr and a non-zero exit.

mod cli;
mod commands;
mod context;
mod output;
mod sandbox_events;

use clap::Parser;

/// mimalloc instead of glibc's malloc: rebuilding the views allocates and
/// frees a few strings per event on several threads, and spent about a fifth
/// of its CPU time in glibc's allocator (`benchmarks/perf`: rebuilds 15–25%
/// faster). The sandbox's cloned child never allocates, so it is unaffected.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Stop quietly when our reader goes away (`dgm history | head`), like
    // other Unix tools — but only for our own stdout. SIGPIPE itself stays
    // ignored (Rust's default): with it at its default, a sandboxed payload
    // or a scorer that exits before reading its stdin would kill the whole
    // evolution mid-attempt.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    // TLS for the LLM client: ring, installed before anything connects.
    dgm_llm::install_crypto_provider();
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DGM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // One line: the error and its causes, joined.
            let mut line = err.to_string();
            for cause in err.chain().skip(1) {
                let cause = cause.to_string();
                if !line.contains(&cause) {
                    line.push_str(": ");
                    line.push_str(&cause);
                }
            }
            eprintln!("dgm: {}", line.replace('\n', " "));
            1
        }
    };
    std::process::exit(code);
}
