//! Rollback history: every change of an agent's active version, with the
//! event that caused it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use dgm_events::{Event, Recorded};
use serde::{Deserialize, Serialize};

use crate::Projection;

#[derive(Debug)]
pub struct RollbackHistory;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveChange {
    /// The event that changed it.
    pub position: u64,
    pub time: DateTime<Utc>,
    /// `seed`, `promotion` or `rollback`.
    pub kind: String,
    pub from: Option<String>,
    pub to: String,
    pub to_event: Option<u64>,
    pub reason: String,
    pub actor: String,
}

impl Projection for RollbackHistory {
    const NAME: &'static str = "rollback_history";
    type Row = Vec<ActiveChange>;

    fn apply(rows: &mut BTreeMap<String, Vec<ActiveChange>>, r: &Recorded) {
        let (agent, change) = match &r.event {
            Event::ActiveVersionChanged(e) => (
                &e.agent,
                ActiveChange {
                    position: r.position,
                    time: r.metadata.time,
                    kind: if e.from.is_none() {
                        "seed"
                    } else {
                        "promotion"
                    }
                    .into(),
                    from: e.from.clone(),
                    to: e.to.clone(),
                    to_event: None,
                    reason: e.reason.clone(),
                    actor: r.metadata.actor.clone(),
                },
            ),
            Event::RolledBack(e) => (
                &e.agent,
                ActiveChange {
                    position: r.position,
                    time: r.metadata.time,
                    kind: "rollback".into(),
                    from: e.from.clone(),
                    to: e.to_version.clone(),
                    to_event: e.to_event,
                    reason: e.reason.clone(),
                    actor: r.metadata.actor.clone(),
                },
            ),
            _ => return,
        };
        rows.entry(agent.clone()).or_default().push(change);
    }
}
