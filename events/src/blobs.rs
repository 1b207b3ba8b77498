//! Content-addressed blobs in the same database as the log: code trees,
//! files and long outputs. A blob's name is the SHA-256 of its bytes, so
//! storing the same content twice stores it once.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::agent::Files;
use crate::store::{Db, Store, StoreError};

/// SHA-256 of `bytes`, hex.
pub fn hash_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
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

impl Store {
    /// Stores `bytes`; returns their hash.
    pub async fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let hash = hash_bytes(bytes);
        match &self.db {
            Db::Sqlite(pool) => {
                sqlx::query("INSERT INTO blobs (hash, size, data) VALUES (?, ?, ?) ON CONFLICT (hash) DO NOTHING")
                    .bind(&hash)
                    .bind(bytes.len() as i64)
                    .bind(bytes)
                    .execute(pool)
                    .await?;
                self.wrote(bytes.len());
            }
            Db::Postgres(pool) => {
                sqlx::query("INSERT INTO blobs (hash, size, data) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING")
                    .bind(&hash)
                    .bind(bytes.len() as i64)
                    .bind(bytes)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(hash)
    }

    /// The bytes stored under `hash`, checked against it.
    pub async fn get_blob(&self, hash: &str) -> Result<Vec<u8>, StoreError> {
        let data: Option<Vec<u8>> = match &self.db {
            Db::Sqlite(pool) => {
                sqlx::query_scalar("SELECT data FROM blobs WHERE hash = ?")
                    .bind(hash)
                    .fetch_optional(pool)
                    .await?
            }
            Db::Postgres(pool) => {
                sqlx::query_scalar("SELECT data FROM blobs WHERE hash = $1")
                    .bind(hash)
                    .fetch_optional(pool)
                    .await?
            }
        };
        let data = data.ok_or_else(|| StoreError::MissingBlob(hash.to_string()))?;
        if hash_bytes(&data) != hash {
            return Err(StoreError::Database(format!(
                "blob {hash} does not match its hash"
            )));
        }
        Ok(data)
    }

    /// Stores every file and the tree's manifest; returns the tree hash.
    pub async fn put_tree(&self, files: &Files) -> Result<String, StoreError> {
        for bytes in files.values() {
            self.put_blob(bytes).await?;
        }
        let (manifest, _) = tree_manifest(files);
        self.put_blob(&manifest).await
    }

    /// The files of the tree named `tree_hash`.
    pub async fn get_tree(&self, tree_hash: &str) -> Result<Files, StoreError> {
        let manifest = self.get_blob(tree_hash).await?;
        let entries: BTreeMap<String, String> = serde_json::from_slice(&manifest)
            .map_err(|e| StoreError::Database(format!("tree {tree_hash} is not a tree: {e}")))?;
        let mut files = Files::new();
        for (path, hash) in entries {
            files.insert(path, self.get_blob(&hash).await?);
        }
        Ok(files)
    }
}
