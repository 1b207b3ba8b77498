//! Storage for projections: view rows and the position each view has
//! folded, written together in one transaction so a crash can never leave
//! a view ahead of or behind its checkpoint.

use std::collections::BTreeMap;

use crate::store::{Db, Store, StoreError};

/// Rows per statement when writing views.
const CHUNK: usize = 300;

/// Rows of one view (key → JSON) and the position they reflect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewSnapshot {
    pub checkpoint: u64,
    pub rows: BTreeMap<String, String>,
}

/// A change to one view, computed by the projector.
#[derive(Debug, Default)]
pub struct ViewChange {
    pub upserts: Vec<(String, String)>,
    pub deletes: Vec<String>,
}

impl Store {
    /// The stored rows of `view` and its checkpoint (0 if never projected).
    pub async fn load_view(&self, view: &str) -> Result<ViewSnapshot, StoreError> {
        let (checkpoint, rows): (Option<i64>, Vec<(String, String)>) = match &self.db {
            Db::Sqlite(pool) => (
                sqlx::query_scalar("SELECT position FROM view_checkpoints WHERE view = ?")
                    .bind(view)
                    .fetch_optional(pool)
                    .await?,
                sqlx::query_as("SELECT key, value FROM view_rows WHERE view = ?")
                    .bind(view)
                    .fetch_all(pool)
                    .await?,
            ),
            Db::Postgres(pool) => (
                sqlx::query_scalar("SELECT position FROM view_checkpoints WHERE view = $1")
                    .bind(view)
                    .fetch_optional(pool)
                    .await?,
                sqlx::query_as("SELECT key, value FROM view_rows WHERE view = $1")
                    .bind(view)
                    .fetch_all(pool)
                    .await?,
            ),
        };
        Ok(ViewSnapshot {
            checkpoint: checkpoint.unwrap_or(0) as u64,
            rows: rows.into_iter().collect(),
        })
    }

    /// Applies `change` and moves the checkpoint from `from` to `to`, in one
    /// transaction. Returns false (and changes nothing) when another process
    /// moved the checkpoint first; the caller reloads and folds again.
    pub async fn save_view(
        &self,
        view: &str,
        from: u64,
        to: u64,
        change: &ViewChange,
    ) -> Result<bool, StoreError> {
        match &self.db {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let moved = if from == 0 {
                    sqlx::query("INSERT INTO view_checkpoints (view, position) VALUES (?, ?) ON CONFLICT (view) DO UPDATE SET position = excluded.position WHERE view_checkpoints.position = 0")
                        .bind(view).bind(to as i64).execute(&mut *tx).await?.rows_affected()
                } else {
                    sqlx::query(
                        "UPDATE view_checkpoints SET position = ? WHERE view = ? AND position = ?",
                    )
                    .bind(to as i64)
                    .bind(view)
                    .bind(from as i64)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                };
                if moved != 1 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                for keys in change.deletes.chunks(CHUNK) {
                    let sql = format!(
                        "DELETE FROM view_rows WHERE view = ? AND key IN ({})",
                        vec!["?"; keys.len()].join(", ")
                    );
                    let mut q = sqlx::query(&sql).bind(view);
                    for key in keys {
                        q = q.bind(key);
                    }
                    q.execute(&mut *tx).await?;
                }
                for rows in change.upserts.chunks(CHUNK) {
                    let sql = format!(
                        "INSERT INTO view_rows (view, key, value) VALUES {} ON CONFLICT (view, key) DO UPDATE SET value = excluded.value",
                        vec!["(?, ?, ?)"; rows.len()].join(", ")
                    );
                    let mut q = sqlx::query(&sql);
                    for (key, value) in rows {
                        q = q.bind(view).bind(key).bind(value);
                    }
                    q.execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let moved = if from == 0 {
                    sqlx::query("INSERT INTO view_checkpoints (view, position) VALUES ($1, $2) ON CONFLICT (view) DO UPDATE SET position = excluded.position WHERE view_checkpoints.position = 0")
                        .bind(view).bind(to as i64).execute(&mut *tx).await?.rows_affected()
                } else {
                    sqlx::query("UPDATE view_checkpoints SET position = $1 WHERE view = $2 AND position = $3")
                        .bind(to as i64).bind(view).bind(from as i64).execute(&mut *tx).await?.rows_affected()
                };
                if moved != 1 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                for keys in change.deletes.chunks(CHUNK) {
                    sqlx::query("DELETE FROM view_rows WHERE view = $1 AND key = ANY($2)")
                        .bind(view)
                        .bind(keys)
                        .execute(&mut *tx)
                        .await?;
                }
                for rows in change.upserts.chunks(CHUNK) {
                    let placeholders: Vec<String> = (0..rows.len())
                        .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
                        .collect();
                    let sql = format!(
                        "INSERT INTO view_rows (view, key, value) VALUES {} ON CONFLICT (view, key) DO UPDATE SET value = excluded.value",
                        placeholders.join(", ")
                    );
                    let mut q = sqlx::query(&sql);
                    for (key, value) in rows {
                        q = q.bind(view).bind(key).bind(value);
                    }
                    q.execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(true)
    }

    /// Forgets `view` entirely (rows and checkpoint), for a rebuild.
    pub async fn clear_view(&self, view: &str) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("DELETE FROM view_rows WHERE view = ?")
                    .bind(view)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM view_checkpoints WHERE view = ?")
                    .bind(view)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("DELETE FROM view_rows WHERE view = $1")
                    .bind(view)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM view_checkpoints WHERE view = $1")
                    .bind(view)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }
}
