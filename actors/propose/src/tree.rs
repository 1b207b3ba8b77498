//! A version's files as one value, and the rules for which of them may change.
//!
//! Proposers, patches and validation all talk about "the code of a version";
//! `CodeTree` is that code (relative path → bytes), and [`FilePolicy`] decides
//! which files a proposer may touch: evolvable glob patterns minus protected
//! ones. Keeping both here means every proposer enforces the same rules.

use std::collections::BTreeMap;

use dgm_events::agent::glob_match;
use serde::{Deserialize, Serialize};

/// The full code of one version: relative path (with `/` separators) → file bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CodeTree(pub BTreeMap<String, Vec<u8>>);

impl CodeTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a tree from (path, text) pairs; handy in tests and examples.
    pub fn from_texts<P: Into<String>, T: AsRef<str>>(
        files: impl IntoIterator<Item = (P, T)>,
    ) -> Self {
        Self(
            files
                .into_iter()
                .map(|(path, text)| (path.into(), text.as_ref().as_bytes().to_vec()))
                .collect(),
        )
    }

    /// Inserts or replaces one file.
    pub fn insert(&mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.0.insert(path.into(), bytes.into());
    }

    /// The bytes of one file.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.0.get(path).map(Vec::as_slice)
    }

    /// The file as UTF-8 text, if it exists and is valid UTF-8.
    pub fn text(&self, path: &str) -> Option<&str> {
        self.get(path)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
    }

    /// Paths in order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the tree holds no file.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Paths whose content differs between `self` and `other` (added, removed or changed), in order.
    pub fn changed_paths(&self, other: &CodeTree) -> Vec<String> {
        let mut paths: Vec<String> = self
            .0
            .keys()
            .chain(other.0.keys())
            .filter(|path| self.0.get(*path) != other.0.get(*path))
            .cloned()
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }
}

impl From<BTreeMap<String, Vec<u8>>> for CodeTree {
    fn from(files: BTreeMap<String, Vec<u8>>) -> Self {
        Self(files)
    }
}

/// Which files a proposer may change: those matching an evolvable pattern and no protected one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePolicy {
    /// Glob patterns (`*.py`, `src/**/*.py`; see [`glob_match`]) or exact paths of files that may evolve.
    pub evolvable: Vec<String>,
    /// Glob patterns or exact paths that must never change; they win over `evolvable`.
    pub protected: Vec<String>,
}

impl FilePolicy {
    /// A policy from evolvable and protected patterns.
    pub fn new(evolvable: &[String], protected: &[String]) -> Self {
        Self {
            evolvable: evolvable.to_vec(),
            protected: protected.to_vec(),
        }
    }

    /// True when `path` may be changed.
    pub fn is_evolvable(&self, path: &str) -> bool {
        !self.is_protected(path)
            && self
                .evolvable
                .iter()
                .any(|pattern| glob_match(pattern, path))
    }

    /// True when `path` matches a protected pattern.
    pub fn is_protected(&self, path: &str) -> bool {
        self.protected
            .iter()
            .any(|pattern| glob_match(pattern, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_wins_over_evolvable() {
        let policy = FilePolicy::new(&["*.py".into()], &["scorer.py".into(), "suite/**".into()]);
        assert!(policy.is_evolvable("priority.py"));
        assert!(!policy.is_evolvable("scorer.py"));
        assert!(!policy.is_evolvable("suite/data/x.py"));
        assert!(!policy.is_evolvable("agent.toml"));
    }

    #[test]
    fn changed_paths_lists_added_removed_and_modified() {
        let a = CodeTree::from_texts([("a", "1"), ("b", "2"), ("c", "3")]);
        let b = CodeTree::from_texts([("a", "1"), ("b", "x"), ("d", "4")]);
        assert_eq!(a.changed_paths(&b), vec!["b", "c", "d"]);
    }
}
