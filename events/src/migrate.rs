//! Schema migrations, applied by dgm itself on every open.
//!
//! The SQL lives in `migrations/{sqlite,postgres}/NNNN_*.sql`; it is compiled
//! in, so a binary always knows the newest schema it understands and refuses
//! a database that is newer.

use crate::store::{Db, StoreError};

const SQLITE: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../migrations/sqlite/0001_event_log.sql"),
    ),
    (
        2,
        include_str!("../../migrations/sqlite/0002_batched_positions.sql"),
    ),
    (
        3,
        include_str!("../../migrations/sqlite/0003_storage_layout.sql"),
    ),
    (
        4,
        include_str!("../../migrations/sqlite/0004_view_rows_per_view.sql"),
    ),
];
const POSTGRES: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../migrations/postgres/0001_event_log.sql"),
    ),
    (
        2,
        include_str!("../../migrations/postgres/0002_batched_positions.sql"),
    ),
    (
        3,
        include_str!("../../migrations/postgres/0003_position_trigger_only_when_missing.sql"),
    ),
    (
        4,
        include_str!("../../migrations/postgres/0004_view_rows_per_view.sql"),
    ),
];

/// The newest schema this binary knows.
pub const SCHEMA_VERSION: i64 = 4;

pub(crate) async fn run(db: &Db) -> Result<(), StoreError> {
    match db {
        Db::Sqlite(pool) => {
            let mut conn = pool.acquire().await?;
            sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS dgm_schema (version integer PRIMARY KEY) STRICT",
            )
            .execute(&mut *conn)
            .await?;
            // BEGIN IMMEDIATE: two processes opening a new file at once
            // must not both migrate it.
            sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            let result = apply_sqlite(&mut conn).await;
            let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
            sqlx::raw_sql(end).execute(&mut *conn).await?;
            result
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(7064236000)")
                .execute(&mut *tx)
                .await?;
            sqlx::raw_sql("CREATE TABLE IF NOT EXISTS dgm_schema (version bigint PRIMARY KEY)")
                .execute(&mut *tx)
                .await?;
            let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM dgm_schema")
                .fetch_one(&mut *tx)
                .await?;
            let found = check(found)?;
            for (version, sql) in POSTGRES.iter().filter(|(v, _)| *v > found) {
                sqlx::raw_sql(sql).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO dgm_schema (version) VALUES ($1)")
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }
    }
}

async fn apply_sqlite(conn: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM dgm_schema")
        .fetch_one(&mut *conn)
        .await?;
    let found = check(found)?;
    for (version, sql) in SQLITE.iter().filter(|(v, _)| *v > found) {
        sqlx::raw_sql(sql).execute(&mut *conn).await?;
        sqlx::query("INSERT INTO dgm_schema (version) VALUES (?)")
            .bind(version)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

fn check(found: Option<i64>) -> Result<i64, StoreError> {
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(found)
}
