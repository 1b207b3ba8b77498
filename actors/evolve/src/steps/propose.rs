//! Propose: what the proposer is told — the parent's code, its failures,
//! the agent's live strategies and the lineage's recent attempts in this
//! run — and the model calls it made, as events.

use dgm_events::{AttemptStarted, Event, Files, LlmCallMade};
use dgm_projections::{AgentArchive, TrajectoryFilter};
use dgm_propose::{
    AttemptNote, CallRecord, CodeTree, Diagnosis, FailureExample, ProposalRequest, StrategyNote,
};

use crate::known::Known;
use crate::run::TRAIN;

/// What a proposer's prompt quotes besides the diagnosis.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalContext {
    pub failures: Vec<FailureExample>,
    pub strategies: Vec<StrategyNote>,
    pub lineage: Vec<AttemptNote>,
    pub parent_score: Option<f64>,
}

/// Failed runs of the parent (5), the agent's live strategies by win rate
/// (5) and the latest attempts on the parent's ancestry in this run (8).
pub fn context(
    known: &Known,
    archive: &AgentArchive,
    agent: &str,
    suite: &str,
    parent: &str,
    attempt_id: &str,
) -> ProposalContext {
    let filter = TrajectoryFilter {
        agent: Some(agent.to_string()),
        version: Some(parent.to_string()),
        ..Default::default()
    };
    let failures: Vec<FailureExample> = known
        .trajectories_of(agent, parent)
        .filter(|r| filter.matches(r) && r.trajectory.outcome != "success")
        .take(5)
        .map(|r| FailureExample {
            task: r.trajectory.task.clone(),
            category: r
                .trajectory
                .error_category
                .clone()
                .unwrap_or_else(|| "unknown".into()),
            rationale: r.trajectory.rationale.clone(),
            excerpt: r.trajectory.log_excerpt.clone(),
        })
        .collect();
    let mut live: Vec<_> = known
        .bank
        .values()
        .filter(|s| s.agent == agent && !s.pruned)
        .collect();
    live.sort_by(|a, b| {
        b.win_rate
            .partial_cmp(&a.win_rate)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.strategy_id.cmp(&b.strategy_id))
    });
    let strategies = live
        .iter()
        .take(5)
        .map(|s| StrategyNote {
            kind: s.kind.clone(),
            diagnosis: s.diagnosis.clone(),
            summary: s.summary.clone(),
            win_rate: s.win_rate,
            uses: s.uses,
        })
        .collect();
    let mut ancestry = std::collections::BTreeSet::new();
    let mut cursor = Some(parent.to_string());
    while let Some(v) = cursor {
        if !ancestry.insert(v.clone()) {
            break;
        }
        cursor = archive.versions.get(&v).and_then(|r| r.parent.clone());
    }
    let mut lineage: Vec<(u32, u32, AttemptNote)> = known
        .run
        .attempts
        .iter()
        .filter(|(id, _)| id.as_str() != attempt_id)
        .filter_map(|(_, a)| {
            let s = a.started.as_ref()?;
            let f = a.finished.as_ref()?;
            ancestry.contains(&s.parent).then(|| {
                (
                    s.generation,
                    s.index,
                    AttemptNote {
                        parent: s.parent.clone(),
                        summary: a
                            .child
                            .as_ref()
                            .map(|c| c.summary.clone())
                            .or_else(|| f.proposal_kind.clone())
                            .unwrap_or_default(),
                        outcome: f.outcome.clone(),
                        score: f.score,
                        reason: f.reason.clone(),
                    },
                )
            })
        })
        .collect();
    lineage.sort_by_key(|n| std::cmp::Reverse((n.0, n.1)));
    ProposalContext {
        failures,
        strategies,
        lineage: lineage.into_iter().take(8).map(|(_, _, n)| n).collect(),
        parent_score: archive
            .versions
            .get(parent)
            .and_then(|p| p.score_on(suite, TRAIN.as_str()))
            .map(|(_, s)| s),
    }
}

/// The request for one attempt's child, with the manifest's (evolvable,
/// protected) globs (its diagnosis is filled in by the diagnose step).
pub fn request(
    started: &AttemptStarted,
    parent: &Files,
    donor: Option<&Files>,
    (evolvable, protected): (Vec<String>, Vec<String>),
    context: ProposalContext,
) -> ProposalRequest {
    ProposalRequest {
        parent: CodeTree(parent.clone()),
        evolvable,
        protected,
        diagnosis: Diagnosis {
            failures: context.failures,
            ..Diagnosis::default()
        },
        donor: donor.map(|d| CodeTree(d.clone())),
        seed: started.seed,
        parent_score: context.parent_score,
        strategies: context.strategies,
        lineage: context.lineage,
    }
}

/// One `LlmCallMade` per model call an attempt's proposer made.
pub fn call_events(run_id: &str, attempt_id: &str, calls: &[CallRecord]) -> Vec<Event> {
    calls
        .iter()
        .map(|c| {
            LlmCallMade {
                run_id: run_id.into(),
                attempt_id: Some(attempt_id.into()),
                purpose: c.purpose.clone(),
                model: c.model.clone(),
                prompt_tokens: c.prompt_tokens,
                completion_tokens: c.completion_tokens,
                latency_ms: c.latency_ms,
                cost_usd: c.cost_usd,
                outcome: c.outcome.clone(),
                error: c.error.clone(),
            }
            .into()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_is_one_event_of_its_attempt() {
        let call = CallRecord {
            purpose: "propose".into(),
            model: "m".into(),
            prompt_tokens: 10,
            completion_tokens: 5,
            latency_ms: 3,
            cost_usd: 0.01,
            outcome: "ok".into(),
            error: None,
        };
        let events = call_events("r", "r/g1/a0", &[call.clone(), call]);
        assert_eq!(events.len(), 2);
        let Event::LlmCallMade(e) = &events[0] else {
            panic!("an LlmCallMade");
        };
        assert_eq!(e.attempt_id.as_deref(), Some("r/g1/a0"));
        assert_eq!(e.prompt_tokens + e.completion_tokens, 15);
    }
}
