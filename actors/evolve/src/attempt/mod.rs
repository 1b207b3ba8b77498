//! One attempt, as the sentence says it: diagnose → propose → predict →
//! validate → evaluate (here, concurrently with the generation's other
//! attempts), then decide → approve → remember (`settle`, in attempt
//! order, so a run is deterministic under its seed). Each step's events are recorded before
//! the next step begins, and every step first checks the attempt's
//! recorded state, so a resumed attempt does only what is missing.

use std::sync::Arc;

use dgm_events::*;
use dgm_memory::Memory;
use dgm_propose::Proposer;

use crate::error::EvolveError;
use crate::run::RunContext;
use crate::run_state::AttemptState;
use crate::steps::approve::Approver;
use crate::steps::diagnose;
use crate::steps::evaluate::{Evaluations, Subject};
use crate::steps::predict::{Prediction, PredictionRequest, Predictor};
use crate::steps::propose;
use crate::steps::select::Selector;
use crate::steps::validate;

mod settle;

pub use settle::settle;

/// The steps' ports and state, shared by a run's attempts.
pub struct Steps {
    pub selector: Selector,
    pub proposer: Arc<dyn Proposer>,
    pub predictor: Arc<dyn Predictor>,
    pub evaluations: Evaluations,
    pub approver: Arc<dyn Approver>,
    pub memory: Arc<dyn Memory>,
}

/// Diagnose → propose → predict → validate → create → evaluate. Returns
/// the attempt's state with everything recorded so far.
pub async fn execute(
    ctx: &RunContext,
    steps: &Steps,
    attempt_id: &str,
    mut attempt: AttemptState,
) -> Result<AttemptState, EvolveError> {
    if attempt.finished.is_some() || attempt.rejected || attempt.admitted {
        return Ok(attempt);
    }
    let Some(started) = attempt.started.clone() else {
        return Ok(attempt);
    };
    let agent = &ctx.config.agent;
    // Everything this attempt reads from the views, in one look.
    let (parent_hash, donor_hash, context, findings) = ctx
        .with_archive(|known, archive| {
            let hash_of = |v: &str| archive.versions.get(v).map(|row| row.tree_hash.clone());
            let findings = attempt.diagnosis.is_none().then(|| {
                let filter = dgm_projections::TrajectoryFilter {
                    agent: Some(agent.clone()),
                    version: Some(started.parent.clone()),
                    ..Default::default()
                };
                diagnose::diagnose(
                    known
                        .trajectories_of(agent, &started.parent)
                        .filter(|r| filter.matches(r)),
                    known.bank.values().filter(|s| &s.agent == agent),
                )
            });
            let context = propose::context(
                known,
                archive,
                agent,
                &ctx.suite.name,
                &started.parent,
                attempt_id,
            );
            let files = (
                archive.manifest.evolvable.clone(),
                archive.manifest.protected.clone(),
            );
            (
                hash_of(&started.parent),
                started.donor.as_deref().and_then(hash_of),
                (context, files),
                findings,
            )
        })
        .await?;
    let (context, (evolvable, protected)) = context;
    let parent_hash = parent_hash
        .ok_or_else(|| EvolveError::Config(format!("parent {} vanished", started.parent)))?;
    let parent_files = ctx.tree(&parent_hash).await?;
    let donor = match &donor_hash {
        Some(hash) => Some(ctx.tree(hash).await?),
        None => None,
    };
    let mut request = propose::request(
        &started,
        &parent_files,
        donor.as_deref(),
        (evolvable, protected),
        context,
    );

    // Diagnose (from the replay buffer; a model adds its analysis when the proposer has one).
    let diagnosis = match (&attempt.diagnosis, findings) {
        (Some(d), _) => d.clone(),
        (None, None) => {
            return Err(EvolveError::Config(format!(
                "{attempt_id}: no diagnosis and no findings"
            )));
        }
        (None, Some(findings)) => {
            diagnose::describe(
                &mut request.diagnosis,
                &findings.summary,
                &findings.categories,
                &findings.rationales,
                None,
            );
            let analysed = steps.proposer.analyse(&request).await;
            record_calls(ctx, attempt_id, &analysed.calls).await?;
            let analysis = analysed.value.unwrap_or_else(|e| {
                tracing::warn!(attempt = %attempt_id, "model diagnosis failed: {e}");
                None
            });
            let made = diagnose::made(&ctx.run_id, attempt_id, &started.parent, findings, analysis);
            ctx.record(vec![made.clone().into()], Some(attempt_id))
                .await?;
            attempt.diagnosis = Some(made.clone());
            made
        }
    };
    diagnose::describe(
        &mut request.diagnosis,
        &diagnosis.summary,
        &diagnosis.categories,
        &diagnosis.rationales,
        diagnosis.analysis.as_ref(),
    );

    // Propose, predict, validate, create (a seeded proposer proposes the
    // same child when an attempt resumes).
    let child = match &attempt.child {
        Some(child) => child.clone(),
        None => {
            let proposed = steps.proposer.propose_recorded(&request).await;
            record_calls(ctx, attempt_id, &proposed.calls).await?;
            let proposal = match proposed.value {
                Ok(p) => p,
                Err(e) => {
                    let reason = format!("proposal failed: {e}");
                    return finish_early(ctx, attempt_id, attempt, "invalid", reason, None).await;
                }
            };
            let prediction = steps
                .predictor
                .predict(&PredictionRequest {
                    attempt_id,
                    parent: &started.parent,
                    parent_score: request.parent_score,
                    generation: started.generation,
                    diagnosis: &diagnosis.summary,
                    proposal: &proposal,
                })
                .await;
            if let Prediction::Skip { reason } = prediction {
                let kind = Some(proposal.kind);
                return finish_early(ctx, attempt_id, attempt, "skipped", reason, kind).await;
            }
            let valid = ctx
                .with_archive(|_, archive| {
                    validate::validate(&request.parent, &proposal, &request.policy(), |v| {
                        archive.versions.contains_key(v)
                    })
                })
                .await?;
            let valid = match valid {
                Ok(v) => v,
                Err(refused) => {
                    let kind = Some(proposal.kind);
                    return finish_early(
                        ctx,
                        attempt_id,
                        attempt,
                        refused.outcome,
                        refused.reason,
                        kind,
                    )
                    .await;
                }
            };
            ctx.store.put_tree(&valid.files).await?;
            ctx.keep_tree(&valid.tree_hash, Arc::new(valid.files));
            let created = VersionCreated {
                agent: agent.clone(),
                version: valid.version.clone(),
                parent: Some(started.parent.clone()),
                tree_hash: valid.tree_hash,
                patch: valid.patch,
                origin: Origin::Proposer,
                summary: format!("{}: {}", proposal.kind, proposal.summary),
            };
            let create = ctx
                .store
                .agent(
                    agent,
                    AgentCommand::CreateVersion(created.clone()),
                    &ctx.meta(Some(attempt_id)),
                )
                .await;
            match create {
                Ok(()) => {}
                // A sibling attempt in flight proposed the same code first.
                Err(StoreError::Command(CommandError::DuplicateVersion { version, .. })) => {
                    let reason =
                        format!("the child equals version {version}, created by another attempt");
                    let kind = Some(proposal.kind);
                    return finish_early(ctx, attempt_id, attempt, "duplicate", reason, kind).await;
                }
                Err(e) => return Err(e.into()),
            }
            attempt.child = Some(created.clone());
            created
        }
    };

    // Evaluate in stages on train.
    let subject = Subject {
        attempt: Some(attempt_id),
        version: &child.version,
        tree_hash: &child.tree_hash,
    };
    let records = steps
        .evaluations
        .train(ctx, subject, &attempt, attempt_id)
        .await?;
    for r in records {
        attempt
            .evals
            .insert(format!("{}/train/{}", attempt_id, r.stage), r);
    }
    Ok(attempt)
}

async fn finish_early(
    ctx: &RunContext,
    attempt_id: &str,
    mut attempt: AttemptState,
    outcome: &str,
    reason: String,
    kind: Option<String>,
) -> Result<AttemptState, EvolveError> {
    let finished = AttemptFinished {
        run_id: ctx.run_id.clone(),
        attempt_id: attempt_id.into(),
        outcome: outcome.into(),
        child: None,
        score: None,
        reason,
        proposal_kind: kind,
    };
    ctx.record(vec![finished.clone().into()], Some(attempt_id))
        .await?;
    attempt.finished = Some(finished);
    Ok(attempt)
}

/// Records the model calls a proposer made for an attempt, one event each.
async fn record_calls(
    ctx: &RunContext,
    attempt_id: &str,
    calls: &[dgm_propose::CallRecord],
) -> Result<(), EvolveError> {
    if calls.is_empty() {
        return Ok(());
    }
    let events = propose::call_events(&ctx.run_id, attempt_id, calls);
    ctx.record(events, Some(attempt_id)).await
}
