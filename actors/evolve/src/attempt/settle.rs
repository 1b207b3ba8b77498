//! Settle one attempt, in attempt order: decide → approve → record the
//! decision on the agent → remember → finish.

use dgm_bench::Split;
use dgm_events::*;
use dgm_memory::PruneRule;

use super::Steps;
use crate::error::EvolveError;
use crate::run::{RunContext, TRAIN};
use crate::run_state::AttemptState;
use crate::steps::approve::{self, ApprovalRequest};
use crate::steps::decide::{self, FirstLook};
use crate::steps::evaluate::{EarlierStages, Subject};
use crate::steps::remember;

/// Decide → approve → record the decision → remember → finish. Idempotent.
pub async fn settle(
    ctx: &RunContext,
    steps: &Steps,
    attempt_id: &str,
    attempt: &AttemptState,
    noisy: bool,
) -> Result<AttemptFinished, EvolveError> {
    let meta = ctx.meta(Some(attempt_id));
    let agent = &ctx.config.agent;
    let threshold = ctx.config.threshold;
    let child = attempt
        .child
        .clone()
        .ok_or_else(|| EvolveError::Config(format!("{attempt_id} has no child")))?;
    let version = child.version.clone();
    let kind = child.summary.split(':').next().map(str::to_string);
    let parent_score = ctx
        .with_archive(|_, archive| {
            attempt
                .started
                .as_ref()
                .and_then(|s| archive.versions.get(&s.parent))
                .and_then(|p| p.score_on(&ctx.suite.name, TRAIN.as_str()))
                .map(|(_, s)| s)
        })
        .await?;
    let best = {
        let mut known = ctx.known().await?;
        steps.selector.best(&mut known, Some(&version))
    };

    // Decide.
    let stage1 = attempt.evals.get(&format!("{attempt_id}/train/1"));
    let last = attempt
        .evals
        .get(&format!("{attempt_id}/train/{}", ctx.last_stage()));
    let verdict = match decide::first_look(stage1, last, best, threshold) {
        FirstLook::Decided(v) => v,
        FirstLook::Contender {
            score,
            best_version,
            best,
        } => {
            let held = confirm(
                ctx,
                steps,
                attempt_id,
                attempt,
                &child,
                &best_version,
                noisy,
            )
            .await?;
            decide::confirmed(score, &best_version, best, threshold, held)
        }
    };
    let score = verdict.score;

    // Approve.
    let (outcome, reason) = if verdict.outcome == "promoted" && !attempt.activated {
        let approval = steps
            .approver
            .approve(&ApprovalRequest {
                attempt_id,
                agent,
                child: &version,
                summary: &child.summary,
                patch: &child.patch,
                score,
                reason: &verdict.reason,
            })
            .await;
        approve::apply(approval, verdict.reason)
    } else {
        (verdict.outcome, verdict.reason)
    };

    // Record the decision on the agent, each effect skipped if already recorded.
    let recorded = decide::Recorded {
        admitted: attempt.admitted,
        rejected: attempt.rejected,
        activated: attempt.activated,
    };
    for command in decide::agent_commands(outcome, &reason, &version, recorded) {
        ctx.store.agent(agent, command, &meta).await?;
    }

    // Remember.
    if outcome == "promoted" && !attempt.strategy_stored {
        let stored = remember::strategy(
            attempt_id,
            agent,
            kind.as_deref(),
            attempt.diagnosis.as_ref(),
            &child,
        );
        steps.memory.store_strategy(meta.clone(), stored).await?;
    }
    if let Some(d) = &attempt.diagnosis {
        let uses = {
            let known = ctx.known().await?;
            remember::uses(
                d,
                |id| known.bank.get(id),
                kind.as_deref(),
                remember::improved(score, parent_score),
                &attempt.strategy_outcomes,
                &attempt.strategy_pruned,
            )
        };
        let rule = PruneRule {
            min_uses: ctx.config.prune_min_uses,
            below: ctx.config.prune_below,
        };
        for used in uses {
            steps
                .memory
                .record_outcome(meta.clone(), used, rule)
                .await?;
        }
    }
    if let Some(started) = &attempt.started {
        steps.proposer.observe(&remember::feedback(
            started.seed,
            kind.as_deref(),
            score,
            parent_score,
        ));
    }
    let finished = AttemptFinished {
        run_id: ctx.run_id.clone(),
        attempt_id: attempt_id.into(),
        outcome: outcome.into(),
        child: Some(version),
        score,
        reason,
        proposal_kind: kind,
    };
    ctx.record(vec![finished.clone().into()], Some(attempt_id))
        .await?;
    Ok(finished)
}

/// A contender must hold on validation (against the best) and, when
/// evaluation is noisy, on a second train evaluation: what held, or why not.
async fn confirm(
    ctx: &RunContext,
    steps: &Steps,
    attempt_id: &str,
    attempt: &AttemptState,
    child: &VersionCreated,
    best: &str,
    noisy: bool,
) -> Result<Result<String, String>, EvolveError> {
    // What the archive says now, before this step's own evaluations.
    let full_train = ctx.full_train_key();
    let (best_hash, best_val, best_score) = ctx
        .with_archive(|_, archive| {
            let row = archive.versions.get(best);
            (
                row.map(|r| r.tree_hash.clone()).unwrap_or_default(),
                row.and_then(|v| v.score_on(&ctx.suite.name, Split::Validation.as_str()))
                    .map(|(_, s)| s),
                crate::steps::select::best_version(archive, &full_train, Some(&child.version))
                    .map(|(_, s)| s),
            )
        })
        .await?;
    let has_validation = ctx.suite.tasks.iter().any(|t| t.split == Split::Validation);
    let evaluations = &steps.evaluations;
    let of_child = Subject {
        attempt: Some(attempt_id),
        version: &child.version,
        tree_hash: &child.tree_hash,
    };
    let mut notes = Vec::new();
    if has_validation {
        let id = format!("{attempt_id}/validation/{}", child.version);
        let child_val = evaluations
            .one(
                ctx,
                of_child,
                1,
                Split::Validation,
                &id,
                attempt,
                &mut EarlierStages::new(),
            )
            .await?;
        let best_val = match best_val {
            Some(s) => Some(s),
            None => {
                let of_best = Subject {
                    attempt: Some(attempt_id),
                    version: best,
                    tree_hash: &best_hash,
                };
                let id = format!("{attempt_id}/validation/{best}");
                evaluations
                    .one(
                        ctx,
                        of_best,
                        1,
                        Split::Validation,
                        &id,
                        attempt,
                        &mut EarlierStages::new(),
                    )
                    .await?
                    .score
            }
        };
        match decide::validation_check(child_val.score, best_val) {
            Ok(note) => notes.push(note),
            Err(why) => return Ok(Err(why)),
        }
    }
    if noisy {
        let id = format!("{attempt_id}/train/re");
        let again = evaluations.again(ctx, of_child, &id, attempt).await?;
        match decide::reevaluation_check(again.score, best_score, ctx.config.threshold) {
            Ok(note) => notes.push(note),
            Err(why) => return Ok(Err(why)),
        }
    }
    Ok(Ok(if notes.is_empty() {
        "no validation split".into()
    } else {
        notes.join("; ")
    }))
}
