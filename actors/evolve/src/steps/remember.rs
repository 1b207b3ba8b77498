//! Remember: a promotion becomes a ReasoningBank strategy; every live
//! strategy the diagnosis named, of the kind the child's change was, gets
//! the outcome (did the child beat its parent?); the proposer hears how
//! its proposal fared. What to remember is decided here, as plain
//! functions; the memory port records it.

use dgm_events::{DiagnosisMade, LlmCallMade, StrategyStored, VersionCreated};
use dgm_memory::StrategyUse;
use dgm_projections::{AgentArchive, StrategyRow};
use dgm_propose::{CallRecord, Feedback, PastProposal};

use crate::run::TRAIN;
use crate::run_state::RunState;

/// The strategy a promoted child's attempt stores (its id is the attempt's).
pub fn strategy(
    attempt_id: &str,
    agent: &str,
    kind: Option<&str>,
    diagnosis: Option<&DiagnosisMade>,
    child: &VersionCreated,
) -> StrategyStored {
    StrategyStored {
        strategy_id: attempt_id.into(),
        agent: agent.into(),
        kind: kind.unwrap_or_default().into(),
        diagnosis: diagnosis.map(|d| d.summary.clone()).unwrap_or_default(),
        summary: child.summary.clone(),
    }
}

/// The strategy uses an attempt records: the diagnosis's strategies that
/// are live, of the child's kind, and not recorded for this attempt yet.
pub fn uses<'a>(
    diagnosis: &DiagnosisMade,
    bank: impl Fn(&str) -> Option<&'a StrategyRow>,
    kind: Option<&str>,
    improved: bool,
    recorded: &[String],
    pruned: &[String],
) -> Vec<StrategyUse> {
    diagnosis
        .strategies
        .iter()
        .filter_map(|id| bank(id))
        .filter(|s| !s.pruned && Some(s.kind.as_str()) == kind)
        .filter(|s| !recorded.contains(&s.strategy_id))
        .map(|s| StrategyUse {
            strategy_id: s.strategy_id.clone(),
            uses: s.uses,
            wins: s.wins,
            success: improved,
            already_pruned: pruned.contains(&s.strategy_id),
        })
        .collect()
}

/// Whether the child beat its parent on train.
pub fn improved(score: Option<f64>, parent_score: Option<f64>) -> bool {
    matches!((score, parent_score), (Some(c), Some(p)) if c > p)
}

/// What the proposer is told about its proposal.
pub fn feedback(
    seed: u64,
    kind: Option<&str>,
    score: Option<f64>,
    parent_score: Option<f64>,
) -> Feedback {
    Feedback {
        seed,
        kind: kind.unwrap_or_default().into(),
        improvement: score.zip(parent_score).map(|(c, p)| c - p),
    }
}

/// A run's proposals so far, oldest first, with the feedback each was
/// given (for a resumed run's proposer: [`dgm_propose::Proposer::restore`]).
pub fn past_proposals(run: &RunState, archive: &AgentArchive, suite: &str) -> Vec<PastProposal> {
    let mut attempts: Vec<_> = run
        .attempts
        .values()
        .filter_map(|a| a.started.as_ref().map(|s| (s, a)))
        .collect();
    attempts.sort_by_key(|(s, _)| (s.generation, s.index));
    attempts
        .into_iter()
        .map(|(started, a)| {
            // Only a settled attempt with a child was told anything.
            let feedback = a.finished.as_ref().filter(|_| a.child.is_some()).map(|f| {
                let parent_score = archive
                    .versions
                    .get(&started.parent)
                    .and_then(|p| p.score_on(suite, TRAIN.as_str()))
                    .map(|(_, s)| s);
                feedback(
                    started.seed,
                    f.proposal_kind.as_deref(),
                    f.score,
                    parent_score,
                )
            });
            PastProposal {
                seed: started.seed,
                calls: a.calls.iter().map(call_record).collect(),
                finished: a.finished.is_some(),
                feedback,
            }
        })
        .collect()
}

fn call_record(e: &LlmCallMade) -> CallRecord {
    CallRecord {
        purpose: e.purpose.clone(),
        model: e.model.clone(),
        prompt_tokens: e.prompt_tokens,
        completion_tokens: e.completion_tokens,
        latency_ms: e.latency_ms,
        cost_usd: e.cost_usd,
        outcome: e.outcome.clone(),
        error: e.error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, kind: &str, pruned: bool) -> StrategyRow {
        StrategyRow {
            strategy_id: id.into(),
            agent: "a".into(),
            kind: kind.into(),
            diagnosis: String::new(),
            summary: String::new(),
            stored_at: 0,
            uses: 3,
            wins: 1,
            win_rate: 1.0 / 3.0,
            pruned,
            pruned_reason: None,
        }
    }

    #[test]
    fn only_live_strategies_of_the_childs_kind_get_an_outcome_once() {
        let rows = [
            row("s1", "mutate:constant", false),
            row("s2", "mutate:operator", false),
            row("s3", "mutate:constant", true),
            row("s4", "mutate:constant", false),
        ];
        let diagnosis = DiagnosisMade {
            run_id: "r".into(),
            attempt_id: "r/g1/a0".into(),
            parent: "v".into(),
            summary: String::new(),
            categories: Default::default(),
            rationales: vec![],
            strategies: vec![
                "s1".into(),
                "s2".into(),
                "s3".into(),
                "s4".into(),
                "gone".into(),
            ],
            analysis: None,
        };
        let bank = |id: &str| rows.iter().find(|r| r.strategy_id == id);
        let used = uses(
            &diagnosis,
            bank,
            Some("mutate:constant"),
            true,
            &["s4".into()],
            &[],
        );
        assert_eq!(used.len(), 1);
        assert_eq!(
            (used[0].strategy_id.as_str(), used[0].uses, used[0].success),
            ("s1", 3, true)
        );
        assert!(improved(Some(0.6), Some(0.5)));
        assert!(!improved(Some(0.5), Some(0.5)));
        assert!(!improved(None, Some(0.5)));
        let told = feedback(7, Some("k"), Some(0.6), Some(0.5));
        assert!((told.improvement.expect("scored") - 0.1).abs() < 1e-12);
    }
}
