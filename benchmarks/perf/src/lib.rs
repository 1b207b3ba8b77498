//! Shared helpers for dgm's performance benchmarks: timing and reporting.

use std::time::{Duration, Instant};

/// Runs `f`, returns its result and how long it took.
pub async fn timed<T, F: std::future::Future<Output = T>>(f: F) -> (T, Duration) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed())
}

/// `events / seconds`, as an integer rate.
pub fn rate(count: usize, took: Duration) -> u64 {
    (count as f64 / took.as_secs_f64().max(1e-9)) as u64
}

/// The allocator the `dgm` binary uses (see `src/main.rs`), so that these
/// figures are the ones dgm gets.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
