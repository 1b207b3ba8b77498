//! Diagnosis from the replay buffer: the parent's failures grouped by error
//! category, with their rationales, plus ReasoningBank strategies that won
//! for this agent.

use std::collections::BTreeMap;

use dgm_projections::{StrategyRow, TrajectoryRow};

/// What the proposer is told about the parent.
#[derive(Debug, Clone, PartialEq)]
pub struct Findings {
    pub summary: String,
    pub categories: BTreeMap<String, u64>,
    pub rationales: Vec<String>,
    pub strategies: Vec<String>,
}

/// Folds the parent's trajectories and the agent's live strategies.
pub fn diagnose<'a>(
    trajectories: impl Iterator<Item = &'a TrajectoryRow>,
    strategies: impl Iterator<Item = &'a StrategyRow>,
) -> Findings {
    let mut categories: BTreeMap<String, u64> = BTreeMap::new();
    let mut rationales: Vec<String> = Vec::new();
    let mut total = 0u64;
    let mut scores = Vec::new();
    for row in trajectories {
        total += 1;
        let t = &row.trajectory;
        if let Some(score) = t.score {
            scores.push(score);
        }
        if t.outcome != "success" {
            let category = t.error_category.clone().unwrap_or_else(|| "unknown".into());
            *categories.entry(category).or_default() += 1;
            if let Some(r) = &t.rationale
                && rationales.len() < 5
                && !rationales.contains(r)
            {
                rationales.push(r.clone());
            }
        }
    }
    let mut live: Vec<&StrategyRow> = strategies.filter(|s| !s.pruned).collect();
    live.sort_by(|a, b| {
        b.win_rate
            .partial_cmp(&a.win_rate)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.strategy_id.cmp(&b.strategy_id))
    });
    let strategies: Vec<String> = live.iter().take(3).map(|s| s.strategy_id.clone()).collect();
    let failed: u64 = categories.values().sum();
    let mean = if scores.is_empty() {
        0.0
    } else {
        scores.iter().sum::<f64>() / scores.len() as f64
    };
    let summary = if total == 0 {
        "no trajectories recorded for the parent yet".to_string()
    } else if failed == 0 {
        format!(
            "all {total} tasks pass; mean task score {mean:.4}: improve quality, not correctness"
        )
    } else {
        let mut by_count: Vec<_> = categories.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let top: Vec<String> = by_count
            .iter()
            .take(3)
            .map(|(c, n)| format!("{c} ×{n}"))
            .collect();
        format!(
            "{failed} of {total} tasks fail ({}); mean task score {mean:.4}",
            top.join(", ")
        )
    };
    Findings {
        summary,
        categories,
        rationales,
        strategies,
    }
}
