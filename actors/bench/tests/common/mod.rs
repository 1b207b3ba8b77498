//! Shared helpers of the dgm-bench integration tests: repository paths, a
//! plain-subprocess executor, and small suite fixtures written to temp dirs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use dgm_bench::{Progress, RunOptions, RunSpec};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn agent(dir: &Path, cmd: &[&str]) -> RunSpec {
    RunSpec {
        code_dir: dir.to_path_buf(),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        env: Default::default(),
    }
}

pub fn opts(parallelism: usize) -> RunOptions {
    RunOptions {
        parallelism,
        ..RunOptions::default()
    }
}

pub fn quiet(_: &Progress) {}

pub fn write(dir: &Path, rel: &str, body: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

pub fn has_pytest() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-m", "pytest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").is_err(), "CI must `pip install pytest`");
        eprintln!("skipping: pytest is not installed (pip install pytest)");
    }
    ok
}
