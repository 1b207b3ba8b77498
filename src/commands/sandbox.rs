//! `dgm sandbox …`: run a command or a source file under the sandbox, with
//! the same limits the evolution loop uses. The payload's output is passed
//! through, then a one-line summary goes to stderr; dgm's exit code mirrors
//! the payload's.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dgm_sandbox::supervisor::{AnyBackend, ExecutionListener, Supervisor, SupervisorConfig};
use dgm_sandbox::{Backend, ExecResult, ExecStatus, Job, Limits, Mount};

#[derive(Debug, clap::Subcommand)]
pub enum SandboxCommand {
    /// Run a command in the sandbox: `dgm sandbox run [OPTIONS] -- CMD ARGS…`
    Run {
        #[command(flatten)]
        opts: SandboxOpts,
        /// The command and its arguments (after `--`).
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<String>,
    },
    /// Syntax-check a source file, then run it in the sandbox (the seed
    /// design's `execute_code`).
    Exec {
        #[command(flatten)]
        opts: SandboxOpts,
        /// Language of the source.
        #[arg(long, value_enum, default_value = "python")]
        lang: Lang,
        /// The source file, or `-` for stdin.
        #[arg(value_name = "FILE|-")]
        file: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Lang {
    Python,
}

#[derive(Debug, clap::Args)]
pub struct SandboxOpts {
    /// Backend: native (Linux namespaces) or docker.
    #[arg(long, default_value = "native", value_parser = parse_backend)]
    backend: Backend,
    /// Memory limit, e.g. 512m, 1g, 65536k.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    memory: Option<u64>,
    /// CPU quota in cores, e.g. 0.5.
    #[arg(long, value_name = "CORES", value_parser = parse_cpus)]
    cpus: Option<f64>,
    /// Maximum processes and threads alive at once.
    #[arg(long, value_name = "N", value_parser = parse_pids)]
    pids: Option<u64>,
    /// Wall-clock limit, e.g. 30s, 500ms, 2m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Size of the writable scratch dir /tmp, e.g. 64m.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    scratch: Option<u64>,
    /// Cap on captured stdout and on stderr, each, e.g. 1m.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    output_limit: Option<u64>,
    /// Give the payload the host's network (off by default).
    #[arg(long)]
    network: bool,
    /// Mount a host path read-only: HOST:PATH (repeatable).
    #[arg(long = "ro", value_name = "HOST:PATH", value_parser = parse_mount)]
    ro: Vec<Mount>,
    /// Working directory inside the sandbox (default /tmp).
    #[arg(long, value_name = "PATH")]
    workdir: Option<PathBuf>,
    /// Print the result as one JSON object instead of passing output through.
    #[arg(long)]
    json: bool,
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    s.parse()
}

/// `512m`, `1g`, `64k`, `1048576`, `1.5g` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (examples: 512m, 1g, 65536k)"))?;
    if !n.is_finite() || n <= 0.0 {
        return Err(format!("`{s}` must be a positive size"));
    }
    Ok((n * mult as f64) as u64)
}

fn parse_cpus(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(c) if c.is_finite() && c >= 0.01 => Ok(c),
        _ => Err(format!(
            "`{s}` is not a CPU quota (a number of cores ≥ 0.01, e.g. 0.5)"
        )),
    }
}

fn parse_pids(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not a process count (≥ 1)")),
    }
}

/// `30s`, `500ms`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a duration (examples: 30s, 500ms, 2m)");
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_mount(s: &str) -> Result<Mount, String> {
    let (host, inside) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("`{s}` is not HOST:PATH"))?;
    if host.is_empty() || !inside.starts_with('/') {
        return Err(format!("`{s}` is not HOST:PATH (PATH must be absolute)"));
    }
    let host = std::fs::canonicalize(host).map_err(|e| format!("{host}: {e}"))?;
    Ok(Mount {
        host,
        sandbox: PathBuf::from(inside),
    })
}

impl SandboxOpts {
    fn limits(&self) -> Limits {
        let d = Limits::default();
        Limits {
            memory_bytes: self.memory.unwrap_or(d.memory_bytes),
            cpus: self.cpus.unwrap_or(d.cpus),
            pids: self.pids.unwrap_or(d.pids),
            timeout: self.timeout.unwrap_or(d.timeout),
            output_bytes: self.output_limit.unwrap_or(d.output_bytes),
            scratch_bytes: self.scratch.unwrap_or(d.scratch_bytes),
            network: self.network,
        }
    }

    fn job(&self, command: Vec<String>) -> Job {
        let mut job = Job::new(command);
        job.limits = self.limits();
        job.mounts = self.ro.clone();
        job.workdir = self.workdir.clone();
        job
    }
}

/// Exit code dgm ends with for a result (shell conventions).
pub fn exit_code(r: &ExecResult) -> i32 {
    match r.status {
        ExecStatus::Ok => 0,
        ExecStatus::NonZeroExit => r.exit_code.unwrap_or(1),
        ExecStatus::Timeout => 124,
        ExecStatus::OutOfMemory => 137,
        ExecStatus::Signaled => 128 + r.signal.unwrap_or(9),
        ExecStatus::SetupError => r.exit_code.unwrap_or(125),
    }
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

/// The one-line summary printed after the payload's output.
pub fn summary(r: &ExecResult, backend: Backend) -> String {
    let status = match r.status {
        ExecStatus::Ok => "ok".to_string(),
        ExecStatus::NonZeroExit => format!("exit {}", r.exit_code.unwrap_or(-1)),
        ExecStatus::Timeout => "timeout".into(),
        ExecStatus::OutOfMemory => "out of memory".into(),
        ExecStatus::Signaled => format!("killed by signal {}", r.signal.unwrap_or(0)),
        ExecStatus::SetupError => "could not start".into(),
    };
    let mut line = format!(
        "dgm sandbox: {status} · wall {} ms · cpu {} ms",
        r.wall.as_millis(),
        r.cpu.as_millis()
    );
    if let Some(p) = r.peak_memory_bytes {
        line.push_str(&format!(" · peak {}", human_bytes(p)));
    }
    if r.stdout_truncated {
        line.push_str(" · stdout truncated");
    }
    if r.stderr_truncated {
        line.push_str(" · stderr truncated");
    }
    line.push_str(&format!(" · {backend}"));
    line
}

fn result_json(r: &ExecResult, backend: Backend) -> serde_json::Value {
    serde_json::json!({
        "backend": backend.to_string(),
        "status": r.status,
        "exit_code": r.exit_code,
        "signal": r.signal,
        "stdout": String::from_utf8_lossy(&r.stdout),
        "stderr": String::from_utf8_lossy(&r.stderr),
        "stdout_truncated": r.stdout_truncated,
        "stderr_truncated": r.stderr_truncated,
        "wall_ms": r.wall.as_secs_f64() * 1000.0,
        "cpu_ms": r.cpu.as_secs_f64() * 1000.0,
        "peak_memory_bytes": r.peak_memory_bytes,
    })
}

fn report(r: &ExecResult, backend: Backend, json: bool) -> anyhow::Result<i32> {
    if json {
        println!("{}", result_json(r, backend));
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(&r.stdout)?;
        out.flush()?;
        let mut err = std::io::stderr().lock();
        err.write_all(&r.stderr)?;
        writeln!(err, "{}", summary(r, backend))?;
    }
    Ok(exit_code(r))
}

async fn supervisor(
    backend: Backend,
    listener: Arc<dyn ExecutionListener>,
) -> anyhow::Result<Supervisor> {
    let b = AnyBackend::connect(backend)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Supervisor::new(b, SupervisorConfig::default(), listener))
}

/// Returns the process exit code dgm should end with.
pub async fn run(cmd: SandboxCommand, listener: Arc<dyn ExecutionListener>) -> anyhow::Result<i32> {
    use dgm_sandbox::Executor;
    match cmd {
        SandboxCommand::Run { opts, command } => {
            let sup = supervisor(opts.backend, listener).await?;
            let job = opts.job(command);
            let r = sup.execute(job).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            report(&r, opts.backend, opts.json)
        }
        SandboxCommand::Exec {
            opts,
            lang: Lang::Python,
            file,
        } => {
            let (name, source) = if file == "-" {
                let mut s = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut s)
                    .context("reading the source from stdin")?;
                ("<stdin>".to_string(), s)
            } else {
                let s = std::fs::read(&file).with_context(|| format!("reading {file}"))?;
                (file.clone(), s)
            };
            let name_lit = serde_json::to_string(&name)?;
            let sup = supervisor(opts.backend, listener).await?;

            // 1. Syntax check (compiles, runs nothing of the source).
            let mut check = opts.job(vec![
                "python3".into(),
                "-c".into(),
                format!("import sys\ncompile(sys.stdin.buffer.read(), {name_lit}, 'exec')"),
            ]);
            check.stdin = source.clone();
            let r = sup
                .execute(check)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if r.status != ExecStatus::Ok {
                if opts.json {
                    let mut v = result_json(&r, opts.backend);
                    v["syntax_error"] = serde_json::Value::Bool(true);
                    println!("{v}");
                } else {
                    let text = String::from_utf8_lossy(&r.stderr);
                    let last = text
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("");
                    eprint!("{text}");
                    eprintln!(
                        "dgm sandbox exec: {name} does not compile ({}); not executed",
                        last.trim()
                    );
                }
                return Ok(2);
            }

            // 2. Run it.
            let mut job = opts.job(vec![
                "python3".into(),
                "-c".into(),
                format!(
                    "import sys\nsrc = sys.stdin.buffer.read()\nsys.stdin = open('/dev/null')\n\
                     sys.argv = [{name_lit}]\n\
                     exec(compile(src, {name_lit}, 'exec'), {{'__name__': '__main__', '__file__': {name_lit}}})"
                ),
            ]);
            job.stdin = source;
            let r = sup.execute(job).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            report(&r, opts.backend, opts.json)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert!(parse_size("12q").is_err());
        assert!(parse_size("-1m").is_err());
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_cpus("0").is_err());
        assert!(parse_mount("nocolon").is_err());
    }
}
