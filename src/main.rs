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

fn main() {
    // Die quietly on a closed pipe (`dgm history | head`), like other Unix tools.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
