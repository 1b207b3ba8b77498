//! The attempt, one module per step, in the order the loop takes them:
//! **select → diagnose → propose → predict → validate → evaluate → decide
//! → approve → remember**. Each step is plain functions or a small type
//! and knows nothing of the others; `crate::attempt` sequences them and
//! records each step's events before the next begins. `predict`,
//! `evaluate`, `approve` and `remember` go through ports (traits), so a
//! world model, remote workers, a human or another memory plug in without
//! a change to the sequence.

pub mod approve;
pub mod decide;
pub mod diagnose;
pub mod evaluate;
pub mod predict;
pub mod propose;
pub mod remember;
pub mod select;
pub mod validate;
