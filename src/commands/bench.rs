//! `dgm bench …`: score a version on a suite.
//! (Owned by the benchmark work; wired into the CLI by `src/cli.rs`.)
