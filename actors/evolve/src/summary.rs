//! What a run achieved, from its state and the archive.

use std::collections::BTreeMap;

use dgm_projections::AgentArchive;
use serde::{Deserialize, Serialize};

use crate::run_state::RunState;
use crate::steps::select::best_version;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub run_id: String,
    pub agent: String,
    pub attempts: u32,
    pub admitted: u32,
    pub promoted: u32,
    pub rejected: u32,
    pub invalid: u32,
    /// admitted / attempts
    pub acceptance_rate: f64,
    pub generations: u32,
    pub seed_version: String,
    pub seed_score: Option<f64>,
    pub best_version: String,
    pub best_score: Option<f64>,
    /// best_score − seed_score
    pub gain: Option<f64>,
    pub best_metrics: BTreeMap<String, f64>,
    pub seed_metrics: BTreeMap<String, f64>,
    pub stop_reason: String,
    pub elapsed_secs: f64,
    /// Wall time of this invocation not spent inside the benchmark runner
    /// (sandbox + scorer), per attempt finished in it: the loop's own cost.
    /// Measured with `--population 1` only (overlapping attempts blur it).
    #[serde(default)]
    pub loop_ms_per_attempt: Option<f64>,
}

/// How the run went, for [`summarize`].
pub struct Ending<'a> {
    pub run_id: &'a str,
    pub agent: &'a str,
    /// The archive key of the full-train score.
    pub full_train: &'a str,
    pub stop_reason: &'a str,
    pub elapsed_secs: f64,
    pub loop_ms_per_attempt: Option<f64>,
}

pub fn summarize(archive: &AgentArchive, state: &RunState, ending: &Ending<'_>) -> Summary {
    let count = |o: &str| state.finished_attempts().filter(|f| f.outcome == o).count() as u32;
    let attempts = state.finished_attempts().count() as u32;
    let promoted = count("promoted");
    let admitted = count("admitted") + promoted;
    let baseline_version = state
        .attempts
        .get("baseline")
        .and_then(|b| b.evals.values().next())
        .map(|r| r.version.clone())
        .unwrap_or_default();
    let key = ending.full_train;
    let seed_row = archive.versions.get(&baseline_version);
    let (best_version, best_score) = best_version(archive, key, None)
        .map(|(v, s)| (v, Some(s)))
        .unwrap_or((baseline_version.clone(), None));
    let seed_score = seed_row.and_then(|r| r.scores.get(key).copied());
    Summary {
        run_id: ending.run_id.into(),
        agent: ending.agent.into(),
        attempts,
        admitted,
        promoted,
        rejected: count("rejected"),
        invalid: count("invalid") + count("duplicate"),
        acceptance_rate: if attempts == 0 {
            0.0
        } else {
            admitted as f64 / attempts as f64
        },
        generations: state.last_generation().unwrap_or(0),
        seed_version: baseline_version.clone(),
        seed_score,
        best_metrics: archive
            .versions
            .get(&best_version)
            .and_then(|r| r.metrics.get(key).cloned())
            .unwrap_or_default(),
        seed_metrics: seed_row
            .and_then(|r| r.metrics.get(key).cloned())
            .unwrap_or_default(),
        gain: best_score.zip(seed_score).map(|(b, s)| b - s),
        best_version,
        best_score,
        stop_reason: ending.stop_reason.into(),
        elapsed_secs: ending.elapsed_secs,
        loop_ms_per_attempt: ending.loop_ms_per_attempt,
    }
}

/// (wall − time in the benchmark runner) / attempts finished by this
/// invocation. Only exact when attempts do not overlap (`population` 1).
pub fn loop_overhead(
    population: u32,
    finished: usize,
    wall_ms: f64,
    judging_ms: f64,
) -> Option<f64> {
    if population != 1 {
        return None;
    }
    let finished = finished as f64;
    (finished > 0.0).then(|| ((wall_ms - judging_ms) / finished).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_only_without_overlap() {
        assert_eq!(loop_overhead(2, 10, 100.0, 50.0), None);
        assert_eq!(loop_overhead(1, 0, 100.0, 50.0), None);
        assert_eq!(loop_overhead(1, 10, 100.0, 50.0), Some(5.0));
        assert_eq!(loop_overhead(1, 10, 10.0, 50.0), Some(0.0));
    }

    #[test]
    fn an_empty_run_sums_to_nothing() {
        let archive: AgentArchive = serde_json::from_value(serde_json::json!({
            "agent": "a",
            "manifest": {"name": "a", "language": "python", "run": ["python3", "a.py"], "evolvable": ["a.py"], "protected": []},
            "source": null,
            "registered_at": 1,
            "active": null,
            "versions": {}
        }))
        .expect("archive");
        let ending = Ending {
            run_id: "r",
            agent: "a",
            full_train: "s/1/train",
            stop_reason: "1 generation done",
            elapsed_secs: 1.0,
            loop_ms_per_attempt: None,
        };
        let s = summarize(&archive, &RunState::default(), &ending);
        assert_eq!(
            (s.attempts, s.acceptance_rate, s.best_score),
            (0, 0.0, None)
        );
        assert_eq!(s.stop_reason, "1 generation done");
    }
}
