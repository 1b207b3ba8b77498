//! Test support shared by every crate's tests: fresh stores on both back ends.
//!
//! PostgreSQL tests need `DGM_TEST_POSTGRES_URL` (an admin URL; `.ci/run`
//! starts a private cluster and sets it). Without it they skip and say so —
//! unless `DGM_REQUIRE_POSTGRES=1` (set in CI), where a missing database is a
//! failure.

use std::path::Path;

use crate::store::StoreUrl;

/// A fresh SQLite store URL inside `dir`.
pub fn sqlite_url(dir: &Path) -> StoreUrl {
    StoreUrl::Sqlite(dir.join("dgm.db"))
}

/// A URL to a brand-new, empty PostgreSQL database, or `None` (after saying
/// so on stderr) when no test server is configured.
pub async fn fresh_postgres_url(test: &str) -> Option<String> {
    let Ok(admin) = std::env::var("DGM_TEST_POSTGRES_URL") else {
        if std::env::var("DGM_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            panic!("{test}: DGM_REQUIRE_POSTGRES=1 but DGM_TEST_POSTGRES_URL is not set");
        }
        eprintln!("SKIPPED {test}: PostgreSQL test skipped (set DGM_TEST_POSTGRES_URL to run it)");
        return None;
    };
    let name = format!("dgm_test_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot reach DGM_TEST_POSTGRES_URL: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot create a test database: {e}"));
    pool.close().await;
    // Same server and credentials, the new database: drop any path and query.
    let authority_end = admin
        .find("://")
        .and_then(|scheme| admin[scheme + 3..].find(['/', '?']).map(|i| scheme + 3 + i))
        .unwrap_or(admin.len());
    let base = &admin[..authority_end];
    Some(format!("{base}/{name}"))
}
