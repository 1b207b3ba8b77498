//! Content-addressed blobs in the same database as the log: code trees,
//! files and long outputs. A blob's name is the SHA-256 of its bytes, so
//! storing the same content twice stores it once.
//!
//! Blobs are never deleted, so a store remembers (a bounded set of) the
//! hashes it has written or read: storing one of those again writes
//! nothing — an evolution step stores the same outputs and the parent's
//! unchanged files over and over.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Mutex;

use sqlx::sqlite::LockedSqliteHandle;

use sha2::{Digest, Sha256};

use crate::agent::Files;
use crate::sqlite_raw::{self, Refused, Statement};
use crate::store::{Db, Store, StoreError, either_pool};

/// SHA-256 of `bytes`, hex.
pub fn hash_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hashes remembered as stored, at most.
const PRESENT_CAP: usize = 4_096;

/// Hashes of blobs known to be in the store (the oldest forgotten first).
#[derive(Default)]
pub(crate) struct Present(Mutex<(HashSet<String>, VecDeque<String>)>);

impl Present {
    /// A poisoned lock only means another thread panicked between whole
    /// updates: the set is still consistent.
    fn lock(&self) -> std::sync::MutexGuard<'_, (HashSet<String>, VecDeque<String>)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn contains(&self, hash: &str) -> bool {
        self.lock().0.contains(hash)
    }

    fn insert(&self, hash: &str) {
        let mut guard = self.lock();
        let (set, order) = &mut *guard;
        if set.insert(hash.to_string()) {
            order.push_back(hash.to_string());
            while order.len() > PRESENT_CAP {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
    }
}

/// How a code tree is stored: path → blob hash. Its own hash names the tree.
fn tree_manifest(files: &Files) -> (Vec<u8>, BTreeMap<&str, String>) {
    let entries: BTreeMap<&str, String> = files
        .iter()
        .map(|(path, bytes)| (path.as_str(), hash_bytes(bytes)))
        .collect();
    let bytes = serde_json::to_vec(&entries).unwrap_or_default();
    (bytes, entries)
}

/// The content hash of a code tree, without storing it.
pub fn tree_hash(files: &Files) -> String {
    hash_bytes(&tree_manifest(files).0)
}

/// The SQLite insert of each new blob.
const INSERT_SQLITE: &str =
    "INSERT INTO blobs (hash, size, data) VALUES (?, ?, ?) ON CONFLICT (hash) DO NOTHING";

/// Inserts `blobs` in the write transaction open on `handle` (see
/// [`sqlite_raw::write`]).
fn sqlite_insert(
    handle: &mut LockedSqliteHandle<'_>,
    blobs: &[(&str, &[u8])],
) -> Result<(), Refused> {
    let mut insert = Statement::prepare(handle, INSERT_SQLITE).map_err(|e| (0, e))?;
    for (hash, bytes) in blobs {
        insert.bind_text(1, hash).map_err(|e| (0, e))?;
        insert.bind_i64(2, bytes.len() as i64).map_err(|e| (0, e))?;
        insert.bind_blob(3, bytes).map_err(|e| (0, e))?;
        if let Err(e) = insert.step() {
            return Err((insert.error_code(), e));
        }
        insert.reset().map_err(|e| (insert.error_code(), e))?;
    }
    Ok(())
}

impl Store {
    /// Stores `bytes`; returns their hash.
    pub async fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let mut hashes = self.put_blobs(&[bytes]).await?;
        Ok(hashes.pop().unwrap_or_default())
    }

    /// Stores each of `blobs` (one transaction for all those not known to
    /// be stored already); returns their hashes, in order.
    pub async fn put_blobs(&self, blobs: &[&[u8]]) -> Result<Vec<String>, StoreError> {
        let hashes: Vec<String> = blobs.iter().map(|b| hash_bytes(b)).collect();
        let mut new: Vec<(&str, &[u8])> = Vec::new();
        for (hash, bytes) in hashes.iter().zip(blobs) {
            if !self.present.contains(hash) && !new.iter().any(|(h, _)| h == hash) {
                new.push((hash, bytes));
            }
        }
        if new.is_empty() {
            return Ok(hashes);
        }
        match &self.db {
            Db::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                sqlite_raw::write(&mut conn, |handle| sqlite_insert(handle, &new))
                    .await?
                    .map_err(|(_, e)| e)?;
                self.wrote(new.iter().map(|(_, b)| b.len()).sum());
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                for (hash, bytes) in &new {
                    sqlx::query("INSERT INTO blobs (hash, size, data) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING")
                        .bind(hash)
                        .bind(bytes.len() as i64)
                        .bind(bytes)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        for (hash, _) in &new {
            self.present.insert(hash);
        }
        Ok(hashes)
    }

    /// The bytes stored under `hash`, checked against it.
    pub async fn get_blob(&self, hash: &str) -> Result<Vec<u8>, StoreError> {
        let data: Option<Vec<u8>> = either_pool!(&self.db, |pool| {
            sqlx::query_scalar("SELECT data FROM blobs WHERE hash = $1")
                .bind(hash)
                .fetch_optional(pool)
                .await?
        });
        let data = data.ok_or_else(|| StoreError::MissingBlob(hash.to_string()))?;
        if hash_bytes(&data) != hash {
            return Err(StoreError::Database(format!(
                "blob {hash} does not match its hash"
            )));
        }
        self.present.insert(hash);
        Ok(data)
    }

    /// Stores every file and the tree's manifest (in one transaction);
    /// returns the tree hash.
    pub async fn put_tree(&self, files: &Files) -> Result<String, StoreError> {
        let (manifest, _) = tree_manifest(files);
        let mut blobs: Vec<&[u8]> = files.values().map(Vec::as_slice).collect();
        blobs.push(&manifest);
        let mut hashes = self.put_blobs(&blobs).await?;
        Ok(hashes.pop().unwrap_or_default())
    }

    /// The files of the tree named `tree_hash` (the manifest, then every
    /// file in one query per few hundred).
    pub async fn get_tree(&self, tree_hash: &str) -> Result<Files, StoreError> {
        let manifest = self.get_blob(tree_hash).await?;
        let entries: BTreeMap<String, String> = serde_json::from_slice(&manifest)
            .map_err(|e| StoreError::Database(format!("tree {tree_hash} is not a tree: {e}")))?;
        let wanted: Vec<&str> = {
            let mut hashes: Vec<&str> = entries.values().map(String::as_str).collect();
            hashes.sort_unstable();
            hashes.dedup();
            hashes
        };
        let mut found: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for chunk in wanted.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let rows: Vec<(String, Vec<u8>)> = match &self.db {
                Db::Sqlite(pool) => {
                    let sql = format!("SELECT hash, data FROM blobs WHERE hash IN ({marks})");
                    let mut q = sqlx::query_as(&sql);
                    for hash in chunk {
                        q = q.bind(*hash);
                    }
                    q.fetch_all(pool).await?
                }
                Db::Postgres(pool) => {
                    sqlx::query_as("SELECT hash, data FROM blobs WHERE hash = ANY($1)")
                        .bind(chunk)
                        .fetch_all(pool)
                        .await?
                }
            };
            for (hash, data) in rows {
                if hash_bytes(&data) != hash {
                    return Err(StoreError::Database(format!(
                        "blob {hash} does not match its hash"
                    )));
                }
                self.present.insert(&hash);
                found.insert(hash, data);
            }
        }
        let mut files = Files::new();
        for (path, hash) in entries {
            let data = found
                .get(&hash)
                .ok_or_else(|| StoreError::MissingBlob(hash.clone()))?;
            files.insert(path, data.clone());
        }
        Ok(files)
    }
}
