//! End-to-end tests of `dgm sandbox run` and `dgm sandbox exec`: the real
//! binary, a SQLite store in a temp dir, the native backend (needs Linux with
//! user namespaces and cgroups, as the sandbox's own tests do).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

struct Dgm {
    dir: tempfile::TempDir,
}

impl Dgm {
    fn new() -> Dgm {
        Dgm {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dgm"));
        cmd.args(args)
            .env(
                "DGM_STORE",
                format!("sqlite://{}/dgm.db", self.dir.path().display()),
            )
            .env_remove("DGM_LOG")
            .current_dir(self.dir.path());
        cmd
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, None, &[])
    }

    fn run_with(&self, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Out {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("dgm runs");
        if let Some(data) = stdin {
            let mut w = child.stdin.take().expect("stdin");
            w.write_all(data).expect("write stdin");
        }
        let out = child.wait_with_output().expect("dgm finishes");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The last line of stderr: the one-line summary.
fn summary(out: &Out) -> &str {
    out.stderr.trim_end().lines().last().unwrap_or("")
}

fn assert_no_panic(out: &Out) {
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn run_python_prints_output_and_a_one_line_summary() {
    let dgm = Dgm::new();
    let out = dgm.run(&["sandbox", "run", "--", "python3", "-c", "print(1)"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "1\n");
    assert_eq!(
        out.stderr.trim_end().lines().count(),
        1,
        "only the summary on stderr: {}",
        out.stderr
    );
    let s = summary(&out);
    assert!(s.starts_with("dgm sandbox: ok · wall "), "{s}");
    assert!(s.contains(" · cpu ") && s.ends_with(" · native"), "{s}");
}

#[test]
fn exit_code_mirrors_the_payload() {
    let dgm = Dgm::new();
    let out = dgm.run(&["sandbox", "run", "--", "sh", "-c", "echo oops >&2; exit 4"]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.starts_with("oops\n"), "{}", out.stderr);
    assert!(
        summary(&out).starts_with("dgm sandbox: exit 4 · "),
        "{}",
        out.stderr
    );

    // A command that does not exist: 127, like a shell.
    let out = dgm.run(&["sandbox", "run", "--", "no-such-command-dgm"]);
    assert_eq!(out.code, 127, "{}", out.stderr);
    assert!(
        summary(&out).starts_with("dgm sandbox: could not start"),
        "{}",
        out.stderr
    );

    // Killed by a signal: 128 + n.
    let out = dgm.run(&["sandbox", "run", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.code, 128 + 15, "{}", out.stderr);
    assert!(
        summary(&out).starts_with("dgm sandbox: killed by signal 15"),
        "{}",
        out.stderr
    );
}

#[test]
fn timeout_exits_124_with_a_summary() {
    let dgm = Dgm::new();
    let t = std::time::Instant::now();
    let out = dgm.run(&[
        "sandbox",
        "run",
        "--timeout",
        "500ms",
        "--",
        "sh",
        "-c",
        "echo started; sleep 30",
    ]);
    assert_eq!(out.code, 124, "{}", out.stderr);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(out.stdout, "started\n");
    assert!(
        summary(&out).starts_with("dgm sandbox: timeout · wall "),
        "{}",
        out.stderr
    );
}

#[test]
fn json_prints_one_object() {
    let dgm = Dgm::new();
    let out = dgm.run(&[
        "sandbox",
        "run",
        "--json",
        "--memory",
        "256m",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.stdout.trim_end().lines().count(), 1, "{}", out.stdout);
    let v: Value = serde_json::from_str(&out.stdout).expect("one JSON object");
    assert_eq!(v["backend"], "native");
    assert_eq!(v["status"], "non_zero_exit");
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["stdout"], "out\n");
    assert_eq!(v["stderr"], "err\n");
    assert_eq!(v["stdout_truncated"], false);
    assert!(v["wall_ms"].as_f64().is_some_and(|w| w > 0.0), "{v}");
    assert!(v["cpu_ms"].is_number(), "{v}");
    // No summary in JSON mode: stderr is empty.
    assert_eq!(out.stderr.trim(), "", "{}", out.stderr);

    let out = dgm.run(&["sandbox", "run", "--json", "--", "true"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).expect("one JSON object");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["exit_code"], 0);
}

#[test]
fn a_bad_size_is_a_usage_error() {
    let dgm = Dgm::new();
    let out = dgm.run(&["sandbox", "run", "--memory", "12q", "--", "true"]);
    assert_eq!(out.code, 2, "clap usage errors exit 2: {}", out.stderr);
    assert_no_panic(&out);
    assert_eq!(out.stdout, "");
    // The error itself is one line; clap may add its `--help` hint below it.
    let first = out.stderr.lines().next().unwrap_or("");
    assert!(
        first.contains("invalid value '12q' for '--memory <SIZE>'")
            && first.contains("`12q` is not a size"),
        "{}",
        out.stderr
    );
    let other: Vec<&str> = out
        .stderr
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        other.iter().all(|l| l.contains("--help")),
        "only the error and clap's hint: {}",
        out.stderr
    );
}

#[test]
fn docker_without_an_engine_is_a_one_line_error() {
    let dgm = Dgm::new();
    let out = dgm.run_with(
        &["sandbox", "run", "--backend", "docker", "--", "true"],
        None,
        &[("DOCKER_HOST", "unix:///nonexistent/dgm-test/docker.sock")],
    );
    assert_ne!(out.code, 0);
    assert_no_panic(&out);
    assert_eq!(out.stdout, "");
    let err = out.stderr.trim();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("dgm: "), "{err}");
    assert!(err.contains("no Docker engine reachable"), "{err}");
}

#[test]
fn exec_with_a_syntax_error_does_not_execute() {
    let dgm = Dgm::new();
    // If any of the file ran it would print RAN and try to create a marker
    // file (the sandbox could not create it on the host anyway, so the
    // decisive checks are the missing output and the missing run summary).
    let src = dgm.dir.path().join("broken.py");
    let marker = dgm.dir.path().join("executed");
    std::fs::write(
        &src,
        format!(
            "print('RAN')\nopen({:?}, 'w').write('x')\ndef broken(:\n    pass\n",
            marker.display().to_string()
        ),
    )
    .unwrap();
    let out = dgm.run(&["sandbox", "exec", "--lang", "python", path(&src)]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(!out.stdout.contains("RAN"), "{}", out.stdout);
    assert!(!marker.exists(), "the file must not be executed");
    let last = out.stderr.trim_end().lines().last().unwrap_or("");
    assert!(
        last.starts_with("dgm sandbox exec: ")
            && last.contains("broken.py does not compile")
            && last.contains("SyntaxError")
            && last.ends_with("not executed"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("line 3"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("dgm sandbox: "),
        "no run summary: {}",
        out.stderr
    );

    // --json: one object flagged as a syntax error.
    let out = dgm.run(&["sandbox", "exec", "--json", path(&src)]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).expect("one JSON object");
    assert_eq!(v["syntax_error"], true);
    assert!(!marker.exists());
}

#[test]
fn exec_runs_a_file_and_reads_stdin_with_dash() {
    let dgm = Dgm::new();
    let src = dgm.dir.path().join("ok.py");
    std::fs::write(
        &src,
        "import sys\nprint('hello from', __name__, sys.argv[0])\nsys.exit(5)\n",
    )
    .unwrap();
    let out = dgm.run(&["sandbox", "exec", "--lang", "python", path(&src)]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        format!("hello from __main__ {}\n", src.display())
    );
    assert!(
        summary(&out).starts_with("dgm sandbox: exit 5 · "),
        "{}",
        out.stderr
    );

    let out = dgm.run_with(
        &["sandbox", "exec", "-"],
        Some(b"print(sum(range(10)))\n"),
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "45\n");
    assert!(
        summary(&out).starts_with("dgm sandbox: ok · "),
        "{}",
        out.stderr
    );

    // A syntax error on stdin is reported under the name <stdin>.
    let out = dgm.run_with(&["sandbox", "exec", "-"], Some(b"if:\n"), &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr
            .contains("dgm sandbox exec: <stdin> does not compile"),
        "{}",
        out.stderr
    );
}

#[test]
fn exec_of_a_missing_file_is_a_one_line_error() {
    let dgm = Dgm::new();
    let out = dgm.run(&["sandbox", "exec", "/nonexistent/dgm-test.py"]);
    assert_eq!(out.code, 1);
    assert_no_panic(&out);
    let err = out.stderr.trim();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("reading /nonexistent/dgm-test.py"), "{err}");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
