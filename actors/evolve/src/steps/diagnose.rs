//! Diagnose: the parent's failures from the replay buffer, grouped by error
//! category, with their rationales, plus ReasoningBank strategies that won
//! for this agent — recorded as `DiagnosisMade` (with a model's analysis
//! when the proposer makes one) and handed to the proposer.

use std::collections::BTreeMap;

use dgm_events::{DiagnosisAnalysis, DiagnosisMade};
use dgm_projections::{StrategyRow, TrajectoryRow};
use dgm_propose::{Diagnosis, FailureCategory};

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

/// The `DiagnosisMade` event of `findings`, with the model's analysis.
pub fn made(
    run_id: &str,
    attempt_id: &str,
    parent: &str,
    findings: Findings,
    analysis: Option<dgm_propose::DiagnosisAnalysis>,
) -> DiagnosisMade {
    DiagnosisMade {
        run_id: run_id.into(),
        attempt_id: attempt_id.into(),
        parent: parent.into(),
        summary: findings.summary,
        categories: findings.categories,
        rationales: findings.rationales,
        strategies: findings.strategies,
        analysis: analysis.map(|a| DiagnosisAnalysis {
            model: a.model,
            summary: a.summary,
            possible_improvements: a.possible_improvements,
            chosen_proposal: a.chosen_proposal,
            implementation_suggestion: a.implementation_suggestion,
            problem_statement: a.problem_statement,
        }),
    }
}

/// Tells the proposer what a diagnosis found (before a model's analysis
/// exists: `analysis` None).
pub fn describe(
    to: &mut Diagnosis,
    summary: &str,
    categories: &BTreeMap<String, u64>,
    rationales: &[String],
    analysis: Option<&DiagnosisAnalysis>,
) {
    to.summary = summary.to_string();
    to.failure_categories = by_count(categories);
    to.rationales = rationales.to_vec();
    to.analysis = analysis.map(|a| dgm_propose::DiagnosisAnalysis {
        model: a.model.clone(),
        summary: a.summary.clone(),
        possible_improvements: a.possible_improvements.clone(),
        chosen_proposal: a.chosen_proposal.clone(),
        implementation_suggestion: a.implementation_suggestion.clone(),
        problem_statement: a.problem_statement.clone(),
    });
}

/// Failure categories, most frequent first (ties by name).
fn by_count(counts: &BTreeMap<String, u64>) -> Vec<FailureCategory> {
    let mut list: Vec<FailureCategory> = counts
        .iter()
        .map(|(c, n)| FailureCategory {
            category: c.clone(),
            count: *n,
        })
        .collect();
    list.sort_by(|a, b| b.count.cmp(&a.count).then(a.category.cmp(&b.category)));
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(task: &str, category: Option<&str>) -> TrajectoryRow {
        TrajectoryRow {
            position: 0,
            evaluation_id: "e".into(),
            run_id: None,
            attempt_id: None,
            trajectory: crate::testing::trajectory("a", "v", task, category),
        }
    }

    #[test]
    fn failures_are_grouped_and_counted() {
        let rows = [
            row("t1", Some("timeout")),
            row("t2", Some("timeout")),
            row("t3", Some("crash")),
            row("t4", None),
        ];
        let findings = diagnose(rows.iter(), std::iter::empty());
        assert_eq!(findings.categories["timeout"], 2);
        assert_eq!(
            findings.summary,
            "3 of 4 tasks fail (timeout ×2, crash ×1); mean task score 0.2500"
        );
        assert_eq!(findings.rationales, ["because timeout", "because crash"]);
        let mut told = Diagnosis::default();
        describe(
            &mut told,
            &findings.summary,
            &findings.categories,
            &findings.rationales,
            None,
        );
        assert_eq!(told.failure_categories[0].category, "timeout");
        assert_eq!(told.failure_categories[1].category, "crash");
    }

    #[test]
    fn nothing_recorded_yet_says_so() {
        let findings = diagnose(std::iter::empty(), std::iter::empty());
        assert_eq!(
            findings.summary,
            "no trajectories recorded for the parent yet"
        );
        let event = made("r", "r/g1/a0", "v", findings, None);
        assert_eq!(event.parent, "v");
        assert!(event.analysis.is_none());
    }
}
