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
    /// Paths or globs (`*.py`, `src/**`; see [`glob_match`]) evolution may change.
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

/// Does `path` (relative, `/`-separated) match the glob `pattern`?
///
/// The one matcher for every "which files" question — the manifest's
/// `evolvable` / `protected` lists, the proposers' file policy and the check
/// at registration — so a pattern means the same thing wherever it is read.
///
/// `*` matches within one path segment, `**` across segments (`**/` also
/// matches no directory at all), `?` one character other than `/`. A pattern
/// without `/` matches the file name in any directory, as in `.gitignore`:
/// `*.py` matches `pkg/a.py`, and a protected `pack.py` protects a `pack.py`
/// a child adds in a subdirectory too. A pattern with `/` must match the
/// whole relative path. A leading `./` on either side is ignored.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
    let path = path.strip_prefix("./").unwrap_or(path);
    if pattern.contains('/') {
        wildcard_match(pattern.as_bytes(), path.as_bytes())
    } else {
        let file_name = path.rsplit('/').next().unwrap_or(path);
        wildcard_match(pattern.as_bytes(), file_name.as_bytes())
    }
}

fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some(b'*') if pattern.get(1) == Some(&b'*') => {
            // `**/` may match zero directories; otherwise `**` swallows any
            // prefix, and the `/` kept in `rest` makes it end at a segment
            // boundary (`**/pack.py` does not match `mypack.py`).
            let rest = &pattern[2..];
            let rest_after_slash = rest.strip_prefix(b"/").unwrap_or(rest);
            if wildcard_match(rest_after_slash, text) {
                return true;
            }
            (0..=text.len()).any(|skip| wildcard_match(rest, &text[skip..]))
        }
        Some(b'*') => {
            let rest = &pattern[1..];
            let mut skip = 0;
            loop {
                if wildcard_match(rest, &text[skip..]) {
                    return true;
                }
                if skip >= text.len() || text[skip] == b'/' {
                    return false;
                }
                skip += 1;
            }
        }
        Some(b'?') => {
            !text.is_empty() && text[0] != b'/' && wildcard_match(&pattern[1..], &text[1..])
        }
        Some(&literal) => {
            text.first() == Some(&literal) && wildcard_match(&pattern[1..], &text[1..])
        }
    }
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
        // A pattern without `/` matches the file name in any directory.
        assert!(glob_match("*.py", "priority.py"));
        assert!(glob_match("*.py", "src/priority.py"));
        assert!(glob_match("*.py", "pkg/priority.py"));
        assert!(!glob_match("*.py", "priority.pyc"));
        assert!(!glob_match("pack.py", "priority.py"));
        assert!(glob_match("pack.py", "sub/pack.py"));
        // A pattern with `/` matches the whole path; `*` stays in one segment.
        assert!(glob_match("src/*.py", "src/a.py"));
        assert!(!glob_match("src/*.py", "src/sub/a.py"));
        assert!(!glob_match("a/b.py", "c/a/b.py"));
        // `**` crosses segments, `**/` may match none, and only at a boundary.
        assert!(glob_match("**/*.py", "src/a/priority.py"));
        assert!(glob_match("**/*.py", "a.py"));
        assert!(glob_match("src/**", "src/a/b.rs"));
        assert!(glob_match("src/**/*.py", "src/a.py"));
        assert!(glob_match("src/**/*.py", "src/sub/deep/a.py"));
        assert!(!glob_match("src/**/pack.py", "src/mypack.py"));
        // `?` is one character; a leading `./` is ignored.
        assert!(glob_match("a?.py", "ab.py"));
        assert!(!glob_match("a?.py", "a/.py"));
        assert!(glob_match("priority.py", "./priority.py"));
        assert!(glob_match("./priority.py", "priority.py"));
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
