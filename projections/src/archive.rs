//! The archive: per agent, every version with its lineage, scores and status.

use std::collections::BTreeMap;

use dgm_events::{AgentManifest, Event, Origin, Recorded};
use serde::{Deserialize, Serialize};

use crate::Projection;

#[derive(Debug)]
pub struct Archive;

/// One agent and all its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentArchive {
    pub agent: String,
    pub manifest: AgentManifest,
    /// The directory it was registered from.
    pub source: Option<String>,
    pub registered_at: u64,
    pub active: Option<String>,
    pub versions: BTreeMap<String, VersionRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRow {
    pub version: String,
    pub parent: Option<String>,
    pub children: u32,
    pub tree_hash: String,
    pub origin: Origin,
    pub summary: String,
    pub created_at: u64,
    pub run_id: Option<String>,
    pub attempt_id: Option<String>,
    /// `None` while undecided.
    pub admitted: Option<bool>,
    pub decision_reason: Option<String>,
    pub active: bool,
    /// Was this version active until a rollback moved away from it?
    pub rolled_back: bool,
    /// "suite/stage/split" → score.
    pub scores: BTreeMap<String, f64>,
    /// "suite/stage/split" → metrics of the latest evaluation.
    pub metrics: BTreeMap<String, BTreeMap<String, f64>>,
}

impl VersionRow {
    /// The best score on a suite's most complete stage for `split`.
    pub fn score_on(&self, suite: &str, split: &str) -> Option<(u32, f64)> {
        self.scores
            .iter()
            .filter_map(|(key, score)| {
                let mut parts = key.rsplitn(3, '/');
                let s = parts.next()?;
                let stage: u32 = parts.next()?.parse().ok()?;
                let su = parts.next()?;
                (su == suite && s == split).then_some((stage, *score))
            })
            .max_by_key(|(stage, _)| *stage)
    }

    /// What the version did on a suite's `split` at the deepest stage it
    /// reached: that stage and every metric, exactly. Versions that agree
    /// on all of them are clones of one behaviour (parent selection weighs
    /// them once); `None` before any metrics.
    pub fn behaviour_on(&self, suite: &str, split: &str) -> Option<String> {
        let (stage, _) = self.score_on(suite, split)?;
        let metrics = self.metrics.get(&score_key(suite, stage, split))?;
        let mut fingerprint = stage.to_string();
        for (name, value) in metrics {
            fingerprint.push_str(&format!(";{name}={:x}", value.to_bits()));
        }
        Some(fingerprint)
    }
}

pub fn score_key(suite: &str, stage: u32, split: &str) -> String {
    format!("{suite}/{stage}/{split}")
}

impl AgentArchive {
    /// The admitted version with the highest score on `split` at its highest stage
    /// (ties: the earliest).
    pub fn best(&self, suite: &str, split: &str) -> Option<&VersionRow> {
        self.versions
            .values()
            .filter(|v| v.admitted == Some(true))
            .filter_map(|v| v.score_on(suite, split).map(|s| (v, s)))
            .max_by(|(a, (sa, xa)), (b, (sb, xb))| {
                (sa, xa)
                    .partial_cmp(&(sb, xb))
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(b.created_at.cmp(&a.created_at))
            })
            .map(|(v, _)| v)
    }
}

impl Projection for Archive {
    const NAME: &'static str = "archive";
    type Row = AgentArchive;

    fn apply(rows: &mut BTreeMap<String, AgentArchive>, r: &Recorded) {
        match &r.event {
            Event::AgentRegistered(e) => {
                rows.insert(
                    e.agent.clone(),
                    AgentArchive {
                        agent: e.agent.clone(),
                        manifest: e.manifest.clone(),
                        source: e.source.clone(),
                        registered_at: r.position,
                        active: None,
                        versions: BTreeMap::new(),
                    },
                );
            }
            Event::VersionCreated(e) => {
                let Some(agent) = rows.get_mut(&e.agent) else {
                    return;
                };
                if let Some(parent) = e.parent.as_ref().and_then(|p| agent.versions.get_mut(p)) {
                    parent.children += 1;
                }
                agent.versions.insert(
                    e.version.clone(),
                    VersionRow {
                        version: e.version.clone(),
                        parent: e.parent.clone(),
                        children: 0,
                        tree_hash: e.tree_hash.clone(),
                        origin: e.origin,
                        summary: e.summary.clone(),
                        created_at: r.position,
                        run_id: r.metadata.run_id.clone(),
                        attempt_id: r.metadata.attempt_id.clone(),
                        admitted: None,
                        decision_reason: None,
                        active: false,
                        rolled_back: false,
                        scores: BTreeMap::new(),
                        metrics: BTreeMap::new(),
                    },
                );
            }
            Event::VersionEvaluated(e) => {
                if let Some(v) = version(rows, &e.agent, &e.version) {
                    let key = score_key(&e.suite, e.stage, &e.split);
                    if let Some(score) = e.score {
                        v.scores.insert(key.clone(), score);
                    }
                    v.metrics.insert(key, e.metrics.clone());
                }
            }
            Event::VersionAdmitted(e) => {
                if let Some(v) = version(rows, &e.agent, &e.version) {
                    v.admitted = Some(true);
                    v.decision_reason = Some(e.reason.clone());
                }
            }
            Event::VersionRejected(e) => {
                if let Some(v) = version(rows, &e.agent, &e.version) {
                    v.admitted = Some(false);
                    v.decision_reason = Some(e.reason.clone());
                }
            }
            Event::ActiveVersionChanged(e) => set_active(rows, &e.agent, &e.to, false),
            Event::RolledBack(e) => set_active(rows, &e.agent, &e.to_version, true),
            _ => {}
        }
    }
}

fn version<'a>(
    rows: &'a mut BTreeMap<String, AgentArchive>,
    agent: &str,
    version: &str,
) -> Option<&'a mut VersionRow> {
    rows.get_mut(agent)?.versions.get_mut(version)
}

fn set_active(rows: &mut BTreeMap<String, AgentArchive>, agent: &str, to: &str, rollback: bool) {
    let Some(a) = rows.get_mut(agent) else { return };
    if let Some(old) = a.active.take().and_then(|old| a.versions.get_mut(&old)) {
        old.active = false;
        if rollback && old.version != to {
            old.rolled_back = true;
        }
    }
    if let Some(new) = a.versions.get_mut(to) {
        new.active = true;
    }
    a.active = Some(to.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(stage_metrics: &[(u32, &[(&str, f64)])]) -> VersionRow {
        let mut row = VersionRow {
            version: "v".into(),
            parent: None,
            children: 0,
            tree_hash: String::new(),
            origin: Origin::Seed,
            summary: String::new(),
            created_at: 0,
            run_id: None,
            attempt_id: None,
            admitted: Some(true),
            decision_reason: None,
            active: false,
            rolled_back: false,
            scores: BTreeMap::new(),
            metrics: BTreeMap::new(),
        };
        for (stage, metrics) in stage_metrics {
            let key = score_key("s", *stage, "train");
            row.scores.insert(key.clone(), 0.5);
            row.metrics.insert(
                key,
                metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            );
        }
        row
    }

    #[test]
    fn behaviour_is_every_metric_of_the_deepest_stage() {
        let a = version(&[
            (1, &[("bins", 10.0)]),
            (2, &[("bins", 30.0), ("excess", 5.0)]),
        ]);
        let clone = version(&[
            (1, &[("bins", 11.0)]),
            (2, &[("bins", 30.0), ("excess", 5.0)]),
        ]);
        let other = version(&[(2, &[("bins", 30.0), ("excess", 5.000001)])]);
        let shallower = version(&[(1, &[("bins", 30.0), ("excess", 5.0)])]);
        let behaviour = |v: &VersionRow| v.behaviour_on("s", "train");
        assert!(behaviour(&a).is_some());
        assert_eq!(
            behaviour(&a),
            behaviour(&clone),
            "earlier stages do not count"
        );
        assert_ne!(
            behaviour(&a),
            behaviour(&other),
            "every metric counts, exactly"
        );
        assert_ne!(behaviour(&a), behaviour(&shallower), "the stage counts");
        assert_eq!(a.behaviour_on("s", "validation"), None);
        assert_eq!(version(&[]).behaviour_on("s", "train"), None);
    }
}
