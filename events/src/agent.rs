//! An agent's manifest (`agent.toml`) and its code as a tree of files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `agent.toml`: how to run the agent and what evolution may touch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentManifest {
    pub name: String,
    pub language: String,
    #[serde(default)]
    pub description: String,
    /// argv that runs the agent on one task, inside the sandbox, in its code dir.
    pub run: Vec<String>,
    /// Paths or globs (`*.py`, `src/**`) evolution may change.
    pub evolvable: Vec<String>,
    /// Paths or globs evolution must never change (wins over `evolvable`).
    #[serde(default)]
    pub protected: Vec<String>,
    /// Default suite, relative to the manifest's directory.
    #[serde(default)]
    pub suite: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl AgentManifest {
    pub const FILE: &'static str = "agent.toml";

    /// Reads and checks `DIR/agent.toml`.
    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join(Self::FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Read {
            path: path.clone(),
            source,
        })?;
        let manifest: Self = toml::from_str(&text).map_err(|e| ManifestError::Invalid {
            path: path.clone(),
            message: e.message().to_string(),
        })?;
        let invalid = |message: &str| ManifestError::Invalid {
            path: path.clone(),
            message: message.to_string(),
        };
        if manifest.name.is_empty()
            || !manifest
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                "field `name` must be non-empty and use only letters, digits, `_` and `-`",
            ));
        }
        if manifest.run.is_empty() {
            return Err(invalid("field `run` must name a command"));
        }
        if manifest.evolvable.is_empty() {
            return Err(invalid("field `evolvable` must list at least one file"));
        }
        Ok(manifest)
    }

    /// May evolution change `path`?
    pub fn is_evolvable(&self, path: &str) -> bool {
        self.evolvable.iter().any(|g| glob_match(g, path))
            && !self.protected.iter().any(|g| glob_match(g, path))
    }
}

/// Minimal glob: `*` matches within a path segment, `**` across segments.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = p[2..].strip_prefix(b"/").unwrap_or(&p[2..]);
                (0..=s.len()).any(|i| go(rest, &s[i..]))
            }
            Some(b'*') => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != b'/')
                .any(|i| go(&p[1..], &s[i..])),
            Some(&c) => s.first() == Some(&c) && go(&p[1..], &s[1..]),
        }
    }
    go(pattern.as_bytes(), path.as_bytes())
}

/// A version's code: relative path → bytes. Sorted, so hashing is stable.
pub type Files = BTreeMap<String, Vec<u8>>;

/// Reads a directory into [`Files`], skipping VCS dirs, caches and `.dgm`.
pub fn read_dir_files(dir: &Path) -> std::io::Result<Files> {
    let mut files = Files::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if matches!(
                name.as_ref(),
                ".git" | ".dgm" | "__pycache__" | "target" | ".pytest_cache"
            ) {
                continue;
            }
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let rel = path
                    .strip_prefix(dir)
                    .map_err(std::io::Error::other)?
                    .to_string_lossy()
                    .replace('\\', "/");
                files.insert(rel, std::fs::read(&path)?);
            }
        }
    }
    Ok(files)
}

/// Writes [`Files`] under `dir`, refusing paths that would escape it.
pub fn write_dir_files(dir: &Path, files: &Files) -> std::io::Result<()> {
    for (rel, bytes) in files {
        let rel_path = Path::new(rel);
        if rel_path.is_absolute()
            || rel_path
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(std::io::Error::other(format!(
                "refusing unsafe path {rel:?}"
            )));
        }
        let path = dir.join(rel_path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.py", "priority.py"));
        assert!(!glob_match("*.py", "src/priority.py"));
        assert!(glob_match("**/*.py", "src/a/priority.py"));
        assert!(glob_match("src/**", "src/a/b.rs"));
        assert!(!glob_match("pack.py", "priority.py"));
    }

    #[test]
    fn protected_wins() {
        let m = AgentManifest {
            name: "a".into(),
            language: "python".into(),
            description: String::new(),
            run: vec!["python3".into()],
            evolvable: vec!["*.py".into()],
            protected: vec!["pack.py".into()],
            suite: None,
        };
        assert!(m.is_evolvable("priority.py"));
        assert!(!m.is_evolvable("pack.py"));
    }
}
