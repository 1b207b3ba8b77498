//! What the loop keeps in memory between steps: code trees by hash (a
//! parent is usually a recent child) and the directories the benchmark
//! runner reads versions' code from (consecutive versions differ in a file
//! or two, and creating and deleting files is most of what writing a fresh
//! directory costs).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use dgm_events::Files;
use dgm_events::agent::write_dir_files;

/// Code trees by tree hash, at most [`Trees::CAP`] of them and
/// [`Trees::CAP_BYTES`] in all (the oldest dropped first).
#[derive(Default)]
pub struct Trees {
    by_hash: HashMap<String, Arc<Files>>,
    order: VecDeque<String>,
    bytes: usize,
}

impl Trees {
    pub const CAP: usize = 1_024;
    pub const CAP_BYTES: usize = 64 << 20;

    fn size(files: &Files) -> usize {
        files
            .iter()
            .map(|(path, bytes)| path.len() + bytes.len())
            .sum()
    }

    pub fn get(&self, hash: &str) -> Option<Arc<Files>> {
        self.by_hash.get(hash).cloned()
    }

    pub fn insert(&mut self, hash: &str, files: Arc<Files>) {
        let size = Self::size(&files);
        if size > Self::CAP_BYTES || self.by_hash.contains_key(hash) {
            return;
        }
        self.by_hash.insert(hash.to_string(), files);
        self.order.push_back(hash.to_string());
        self.bytes += size;
        while self.order.len() > Self::CAP || self.bytes > Self::CAP_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(files) = self.by_hash.remove(&old) {
                self.bytes -= Self::size(&files);
            }
        }
    }
}

/// A directory holding one version's code, and what it holds.
pub struct Written {
    dir: tempfile::TempDir,
    files: Files,
}

impl Written {
    pub fn new(files: &Files) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("dgm-version-").tempdir()?;
        write_dir_files(dir.path(), files)?;
        Ok(Self {
            dir,
            files: files.clone(),
        })
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Makes the directory hold exactly `files`, touching only what differs.
    pub fn rewrite(&mut self, files: &Files) -> std::io::Result<()> {
        if self.files == *files {
            return Ok(());
        }
        let root = self.dir.path();
        for gone in self.files.keys().filter(|p| !files.contains_key(*p)) {
            let path = root.join(gone);
            std::fs::remove_file(&path)?;
            // Directories left empty go too (a fresh one would not have them).
            let mut parent = path.parent();
            while let Some(dir) = parent.filter(|d| *d != root) {
                if std::fs::remove_dir(dir).is_err() {
                    break;
                }
                parent = dir.parent();
            }
        }
        let changed: Files = files
            .iter()
            .filter(|(path, bytes)| self.files.get(*path) != Some(*bytes))
            .map(|(path, bytes)| (path.clone(), bytes.clone()))
            .collect();
        // A changed file is replaced by a new one, not truncated: ext4
        // flushes a file truncated and rewritten when it is closed.
        for path in changed.keys().filter(|p| self.files.contains_key(*p)) {
            std::fs::remove_file(root.join(path))?;
        }
        write_dir_files(root, &changed)?;
        self.files = files.clone();
        Ok(())
    }
}

/// Directories versions were written to, kept for the next version.
#[derive(Default)]
pub struct CodeDirs(Mutex<Vec<Written>>);

impl CodeDirs {
    /// Kept at most (attempts in flight at once each hold one).
    pub const CAP: usize = 8;

    /// A directory holding exactly `files`: one that already does, else
    /// the last one given back, rewritten, else a new one.
    pub fn checkout(&self, files: &Files) -> std::io::Result<Written> {
        let reused = {
            let mut free = self.0.lock().unwrap_or_else(|p| p.into_inner());
            match free.iter().rposition(|w| w.files == *files) {
                Some(i) => Some(free.remove(i)),
                None => free.pop(),
            }
        };
        match reused.and_then(|mut w| w.rewrite(files).is_ok().then_some(w)) {
            Some(w) => Ok(w),
            None => Written::new(files),
        }
    }

    pub fn give_back(&self, written: Written) {
        let mut free = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < Self::CAP {
            free.push(written);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str)]) -> Files {
        entries
            .iter()
            .map(|(p, b)| (p.to_string(), b.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_reused_directory_holds_exactly_the_new_files() {
        let dirs = CodeDirs::default();
        let first = files(&[("a.py", "1"), ("pkg/b.py", "2")]);
        let w = dirs.checkout(&first).expect("checkout");
        let path = w.path().to_path_buf();
        dirs.give_back(w);
        let second = files(&[("a.py", "3"), ("c.py", "4")]);
        let w = dirs.checkout(&second).expect("checkout");
        assert_eq!(w.path(), path, "the directory is reused");
        let on_disk = dgm_events::agent::read_dir_files(w.path()).expect("read");
        assert_eq!(on_disk, second);
        assert!(!path.join("pkg").exists(), "emptied directories go");
    }

    #[test]
    fn trees_drop_the_oldest_past_the_cap() {
        let mut trees = Trees::default();
        for i in 0..Trees::CAP + 1 {
            trees.insert(&format!("h{i}"), Arc::new(files(&[("a", "b")])));
        }
        assert!(trees.get("h0").is_none());
        assert!(trees.get(&format!("h{}", Trees::CAP)).is_some());
    }
}
