//! Runs: each evolution run with its configuration, status and summary.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use dgm_events::{Event, Recorded};
use serde::{Deserialize, Serialize};

use crate::Projection;

#[derive(Debug)]
pub struct Runs;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub run_id: String,
    pub agent: String,
    pub suite: String,
    pub config: serde_json::Value,
    /// `running`, `completed` or `failed`.
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub started_position: u64,
    pub ended_at: Option<DateTime<Utc>>,
    pub summary: Option<serde_json::Value>,
    pub error: Option<String>,
    /// Events recorded under this run (any stream).
    pub events: u64,
}

impl Projection for Runs {
    const NAME: &'static str = "runs";
    type Row = RunRow;

    fn apply(rows: &mut BTreeMap<String, RunRow>, r: &Recorded) {
        match &r.event {
            Event::RunStarted(e) => {
                rows.insert(
                    e.run_id.clone(),
                    RunRow {
                        run_id: e.run_id.clone(),
                        agent: e.agent.clone(),
                        suite: e.suite.clone(),
                        config: e.config.clone(),
                        status: "running".into(),
                        started_at: r.metadata.time,
                        started_position: r.position,
                        ended_at: None,
                        summary: None,
                        error: None,
                        events: 1,
                    },
                );
            }
            Event::RunCompleted(e) => {
                if let Some(run) = rows.get_mut(&e.run_id) {
                    run.status = "completed".into();
                    run.ended_at = Some(r.metadata.time);
                    run.summary = Some(e.summary.clone());
                    run.events += 1;
                }
            }
            Event::RunFailed(e) => {
                if let Some(run) = rows.get_mut(&e.run_id) {
                    run.status = "failed".into();
                    run.ended_at = Some(r.metadata.time);
                    run.error = Some(e.error.clone());
                    run.events += 1;
                }
            }
            _ => {
                if let Some(run) = r.metadata.run_id.as_ref().and_then(|id| rows.get_mut(id)) {
                    run.events += 1;
                }
            }
        }
    }
}
