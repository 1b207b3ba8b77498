//! The replay buffer: every trajectory (one version on one task), queryable
//! by agent, version, outcome, error category and tag.

use std::collections::BTreeMap;

use dgm_events::{Event, Recorded, Trajectory};
use serde::{Deserialize, Serialize};

use crate::Projection;

#[derive(Debug)]
pub struct ReplayBuffer;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryRow {
    pub position: u64,
    pub evaluation_id: String,
    pub run_id: Option<String>,
    pub attempt_id: Option<String>,
    pub trajectory: Trajectory,
}

/// A query over the buffer; `None` fields match everything.
#[derive(Debug, Clone, Default)]
pub struct TrajectoryFilter {
    pub agent: Option<String>,
    pub version: Option<String>,
    pub outcome: Option<String>,
    pub error_category: Option<String>,
    pub tag: Option<String>,
}

impl TrajectoryFilter {
    pub fn matches(&self, row: &TrajectoryRow) -> bool {
        let t = &row.trajectory;
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.agent, &t.agent)
            && eq(&self.version, &t.version)
            && eq(&self.outcome, &t.outcome)
            && self
                .error_category
                .as_deref()
                .is_none_or(|c| t.error_category.as_deref() == Some(c))
            && self
                .tag
                .as_deref()
                .is_none_or(|tag| t.tags.iter().any(|x| x == tag))
    }
}

impl Projection for ReplayBuffer {
    const NAME: &'static str = "replay_buffer";
    type Row = TrajectoryRow;
    /// One row per trajectory, keyed by its position.
    const INSERT_ONLY: bool = true;

    fn apply(rows: &mut BTreeMap<String, TrajectoryRow>, r: &Recorded) {
        if let Event::TrajectoryRecorded(e) = &r.event {
            rows.insert(
                format!("{:016}", r.position),
                TrajectoryRow {
                    position: r.position,
                    evaluation_id: e.evaluation_id.clone(),
                    run_id: r.metadata.run_id.clone(),
                    attempt_id: r.metadata.attempt_id.clone(),
                    trajectory: e.trajectory.clone(),
                },
            );
        }
    }

    fn apply_owned(rows: &mut BTreeMap<String, TrajectoryRow>, r: Recorded) {
        if let Event::TrajectoryRecorded(e) = r.event {
            rows.insert(
                format!("{:016}", r.position),
                TrajectoryRow {
                    position: r.position,
                    evaluation_id: e.evaluation_id,
                    run_id: r.metadata.run_id,
                    attempt_id: r.metadata.attempt_id,
                    trajectory: e.trajectory,
                },
            );
        }
    }
}
