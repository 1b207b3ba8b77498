//! The `self` proposer: the agent improves itself (the Gödel part).
//!
//! The agent's own `improve` entry point runs in the sandbox on a writable
//! copy of its code, with the diagnosis as input; whatever it changes is the
//! child. Only the parent's code and the diagnosis are mounted — never the
//! suite, its data or its scorer — and the result is taken from the copy,
//! then held to the same rules as any proposal (evolvable files only,
//! protected ones untouched, Python that parses).
//!
//! The job's command is a small shell wrapper: copy `/dgm/agent` to
//! `/tmp/agent`, run the entry point there with its stdout sent to stderr,
//! then print the resulting tree as one JSON line (base64 contents) on stdout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dgm_propose::{CodeTree, Proposal, ProposalRequest, ProposeError, Proposer};
use dgm_sandbox::{ExecStatus, Executor, Job, Limits, Mount};

use crate::client::shorten;

/// Where the parent's code and the input appear inside the sandbox.
pub const AGENT_MOUNT: &str = "/dgm/agent";
pub const INPUT_MOUNT: &str = "/dgm/input";

const WRAPPER: &str = r#"set -u
cp -r /dgm/agent /tmp/agent || exit 97
cd /tmp/agent || exit 97
"$@" >&2
status=$?
python3 -S -c '
import base64, json, os, sys
out = {}
for root, dirs, files in os.walk("."):
    dirs[:] = sorted(d for d in dirs if d != "__pycache__")
    for name in sorted(files):
        if name.endswith(".pyc"):
            continue
        path = os.path.join(root, name)
        if os.path.islink(path):
            continue
        with open(path, "rb") as f:
            out[os.path.relpath(path, ".")] = base64.b64encode(f.read()).decode()
sys.stdout.write(json.dumps(out) + "\n")
' || exit 98
exit $status
"#;

/// How the `improve` entry runs.
#[derive(Debug, Clone)]
pub struct SelfConfig {
    /// argv run in the copy of the agent's code; the diagnosis file's path is appended.
    pub command: Vec<String>,
    /// Extra environment (`OPENAI_BASE_URL`, `OPENAI_MODEL`, ...).
    pub env: BTreeMap<String, String>,
    pub limits: Limits,
}

impl Default for SelfConfig {
    fn default() -> Self {
        Self {
            command: vec!["python3".into(), "improve.py".into()],
            env: BTreeMap::new(),
            limits: Limits {
                timeout: Duration::from_secs(600),
                memory_bytes: 1024 * 1024 * 1024,
                pids: 128,
                output_bytes: 16 * 1024 * 1024,
                scratch_bytes: 256 * 1024 * 1024,
                ..Limits::default()
            },
        }
    }
}

/// The proposer.
pub struct SelfProposer<E: Executor> {
    executor: Arc<E>,
    config: SelfConfig,
}

impl<E: Executor> std::fmt::Debug for SelfProposer<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfProposer")
            .field("command", &self.config.command)
            .finish_non_exhaustive()
    }
}

impl<E: Executor> SelfProposer<E> {
    pub fn new(executor: Arc<E>, config: SelfConfig) -> Self {
        Self { executor, config }
    }
}

fn backend(what: &str, e: impl std::fmt::Display) -> ProposeError {
    ProposeError::Backend(format!("{what}: {e}"))
}

/// The input file the `improve` entry reads.
pub fn improve_input(request: &ProposalRequest) -> serde_json::Value {
    serde_json::json!({
        "diagnosis": request.diagnosis,
        "evolvable": request.evolvable,
        "protected": request.protected,
        "parent_score": request.parent_score,
        "strategies": request.strategies,
        "lineage": request.lineage,
    })
}

#[async_trait]
impl<E: Executor + 'static> Proposer for SelfProposer<E> {
    fn name(&self) -> &str {
        "self"
    }

    async fn propose(&self, request: &ProposalRequest) -> Result<Proposal, ProposeError> {
        let code = tempfile::Builder::new()
            .prefix("dgm-self-")
            .tempdir()
            .map_err(|e| backend("temp dir", e))?;
        for (path, bytes) in &request.parent.0 {
            let target = code.path().join(path);
            if path.split('/').any(|c| c == ".." || c.is_empty()) {
                return Err(backend("unsafe path in the parent", path));
            }
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir).map_err(|e| backend("write parent", e))?;
            }
            std::fs::write(&target, bytes).map_err(|e| backend("write parent", e))?;
        }
        let input = tempfile::Builder::new()
            .prefix("dgm-self-input-")
            .tempdir()
            .map_err(|e| backend("temp dir", e))?;
        let body = serde_json::to_vec_pretty(&improve_input(request))
            .map_err(|e| backend("diagnosis", e))?;
        std::fs::write(input.path().join("diagnosis.json"), body)
            .map_err(|e| backend("write diagnosis", e))?;

        let mut command: Vec<String> = vec!["sh".into(), "-c".into(), WRAPPER.into(), "sh".into()];
        command.extend(self.config.command.iter().cloned());
        command.push(format!("{INPUT_MOUNT}/diagnosis.json"));
        let mut job = Job::new(command);
        job.mounts = vec![
            Mount {
                host: code.path().to_path_buf(),
                sandbox: PathBuf::from(AGENT_MOUNT),
            },
            Mount {
                host: input.path().to_path_buf(),
                sandbox: PathBuf::from(INPUT_MOUNT),
            },
        ];
        job.env = self.config.env.clone();
        job.env.insert(
            "DGM_IMPROVE_INPUT".into(),
            format!("{INPUT_MOUNT}/diagnosis.json"),
        );
        job.env.insert("PYTHONDONTWRITEBYTECODE".into(), "1".into());
        job.limits = self.config.limits.clone();
        let result = self
            .executor
            .execute(job)
            .await
            .map_err(|e| backend("sandbox", e))?;
        let stderr = String::from_utf8_lossy(&result.stderr);
        let tail: String = {
            let chars: Vec<char> = stderr.chars().collect();
            chars[chars.len().saturating_sub(600)..].iter().collect()
        };
        if result.status != ExecStatus::Ok {
            return Err(ProposeError::Backend(format!(
                "the improve entry ended {:?} (exit {:?}): {}",
                result.status,
                result.exit_code,
                tail.trim()
            )));
        }
        if result.stdout_truncated {
            return Err(backend(
                "the improve entry",
                "the changed code is larger than the output cap",
            ));
        }
        let stdout = String::from_utf8_lossy(&result.stdout);
        let line = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let files: BTreeMap<String, String> =
            serde_json::from_str(line).map_err(|e| backend("reading the changed code", e))?;
        let mut child = CodeTree::new();
        for (path, b64) in files {
            let bytes = base64_decode(&b64).ok_or_else(|| {
                backend("reading the changed code", format!("{path}: bad base64"))
            })?;
            child.insert(path, bytes);
        }
        let policy = request.policy();
        let changed = request.parent.changed_paths(&child);
        if changed.is_empty() {
            return Err(ProposeError::NoChangePossible(format!(
                "the improve entry changed nothing: {}",
                shorten(tail.trim(), 300)
            )));
        }
        let outside: Vec<&String> = changed.iter().filter(|p| !policy.is_evolvable(p)).collect();
        if !outside.is_empty() {
            return Err(ProposeError::NoChangePossible(format!(
                "the improve entry changed files that may not evolve: {}",
                outside
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        for path in &changed {
            if let (Some(old), Some(new)) = (request.parent.text(path), child.text(path)) {
                crate::edits::check_regions(path, old, new)
                    .map_err(|e| ProposeError::NoChangePossible(e.to_string()))?;
            }
        }
        let said = stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("SUMMARY:"))
            .map(|l| l.trim_start_matches("SUMMARY:").trim().to_string())
            .unwrap_or_else(|| format!("changed {}", changed.join(", ")));
        Ok(Proposal {
            files: child,
            kind: "self:improve".into(),
            summary: shorten(&said, 200),
        })
    }
}

/// Standard base64 (with padding), as Python's `base64.b64encode` writes it.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = if i >= 4 - pad { 0 } else { value(c)? };
            n = (n << 6) | v;
        }
        out.push((n >> 16) as u8);
        if pad < 2 {
            out.push((n >> 8) as u8);
        }
        if pad < 1 {
            out.push(n as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_python_output() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a").is_none());
        assert!(base64_decode("a$==").is_none());
    }
}
