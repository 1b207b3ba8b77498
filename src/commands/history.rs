//! `dgm history`: the event log itself, in position order.

use dgm_events::{Event, Recorded};

use crate::context::Context;
use crate::output;

/// The agent an event is about, when it names one.
fn agent_of(event: &Event) -> Option<&str> {
    Some(match event {
        Event::AgentRegistered(e) => &e.agent,
        Event::VersionCreated(e) => &e.agent,
        Event::VersionEvaluated(e) => &e.agent,
        Event::VersionAdmitted(e) => &e.agent,
        Event::VersionRejected(e) => &e.agent,
        Event::ActiveVersionChanged(e) => &e.agent,
        Event::RolledBack(e) => &e.agent,
        Event::RunStarted(e) => &e.agent,
        Event::TrajectoryRecorded(e) => &e.trajectory.agent,
        Event::StrategyStored(e) => &e.agent,
        Event::BenchmarkStarted(e) => return e.agent.as_deref(),
        _ => return None,
    })
}

/// A one-line description of an event.
pub fn describe(event: &Event) -> String {
    match event {
        Event::AgentRegistered(e) => format!("agent {} ({})", e.agent, e.manifest.language),
        Event::VersionCreated(e) => format!(
            "{} {} from {} [{:?}] {}",
            e.agent,
            e.version,
            e.parent.as_deref().unwrap_or("-"),
            e.origin,
            e.summary
        ),
        Event::VersionEvaluated(e) => format!(
            "{} {} on {} stage {} {}: {}",
            e.agent,
            e.version,
            e.suite,
            e.stage,
            e.split,
            output::score(e.score)
        ),
        Event::VersionAdmitted(e) => format!("{} {}: {}", e.agent, e.version, e.reason),
        Event::VersionRejected(e) => format!("{} {}: {}", e.agent, e.version, e.reason),
        Event::ActiveVersionChanged(e) => format!(
            "{} {} -> {}: {}",
            e.agent,
            e.from.as_deref().unwrap_or("-"),
            e.to,
            e.reason
        ),
        Event::RolledBack(e) => format!(
            "{} {} -> {}{}: {}",
            e.agent,
            e.from.as_deref().unwrap_or("-"),
            e.to_version,
            e.to_event
                .map(|n| format!(" (as of event {n})"))
                .unwrap_or_default(),
            e.reason
        ),
        Event::RunStarted(e) => format!("run {} of {} on {}", e.run_id, e.agent, e.suite),
        Event::RunCompleted(e) => format!("run {}", e.run_id),
        Event::RunFailed(e) => format!("run {}: {}", e.run_id, e.error),
        Event::RunInterrupted(e) => format!("run {}: {}", e.run_id, e.reason),
        Event::AttemptStarted(e) => format!(
            "{} gen {} #{} parent {} ({})",
            e.attempt_id, e.generation, e.index, e.parent, e.selection
        ),
        Event::DiagnosisMade(e) => match &e.analysis {
            Some(a) => format!(
                "{}: {} — {} proposes: {}",
                e.attempt_id, e.summary, a.model, a.chosen_proposal
            ),
            None => format!("{}: {}", e.attempt_id, e.summary),
        },
        Event::LlmCallMade(e) => format!(
            "{} {} {}: {} in + {} out tokens, {} ms, ${:.6}{}",
            e.attempt_id.as_deref().unwrap_or(&e.run_id),
            e.purpose,
            e.model,
            e.prompt_tokens,
            e.completion_tokens,
            e.latency_ms,
            e.cost_usd,
            if e.outcome == "ok" {
                String::new()
            } else {
                format!(" ({})", e.outcome)
            }
        ),
        Event::AttemptFinished(e) => format!(
            "{} {} {}: {}",
            e.attempt_id,
            e.outcome,
            e.child.as_deref().unwrap_or("-"),
            e.reason
        ),
        Event::TrajectoryRecorded(e) => format!(
            "{} {} task {}: {}{}",
            e.trajectory.agent,
            e.trajectory.version,
            e.trajectory.task,
            e.trajectory.outcome,
            e.trajectory
                .error_category
                .as_ref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        ),
        Event::BenchmarkStarted(e) => format!(
            "{} stage {} {} ({} tasks)",
            e.suite, e.stage, e.split, e.tasks
        ),
        Event::BenchmarkCompleted(e) => format!("score {}", output::score(e.score)),
        Event::StrategyStored(e) => format!("{} {}: {}", e.strategy_id, e.kind, e.summary),
        Event::StrategyOutcomeRecorded(e) => {
            format!(
                "{} {}",
                e.strategy_id,
                if e.success { "won" } else { "lost" }
            )
        }
        Event::StrategyPruned(e) => format!("{}: {}", e.strategy_id, e.reason),
        Event::SandboxExecutionStarted(e) => e.command.join(" "),
        Event::SandboxExecutionFinished(e) => {
            let exit = e
                .exit_code
                .map_or_else(|| "-".to_string(), |c| c.to_string());
            format!("{} exit {exit} in {} ms", e.status, e.wall_ms)
        }
    }
}

pub async fn show(
    ctx: &Context,
    agent: Option<&str>,
    from: Option<u64>,
    to: Option<u64>,
) -> anyhow::Result<i32> {
    let after = from.unwrap_or(1).saturating_sub(1);
    let mut events: Vec<Recorded> = Vec::new();
    let mut cursor = after;
    // Runs and evaluations of the agent count as about the agent.
    let mut related: std::collections::BTreeSet<String> = Default::default();
    loop {
        let page = ctx.store.read(cursor, to, 10_000).await?;
        let Some(last) = page.last().map(|r| r.position) else {
            break;
        };
        cursor = last;
        for r in page {
            if let Some(want) = agent {
                let direct = agent_of(&r.event) == Some(want);
                if direct {
                    related.insert(r.aggregate_id.clone());
                    if let Some(run) = &r.metadata.run_id {
                        related.insert(run.clone());
                    }
                }
                let via_run = r
                    .metadata
                    .run_id
                    .as_ref()
                    .is_some_and(|run| related.contains(run));
                if !(direct || via_run || related.contains(&r.aggregate_id)) {
                    continue;
                }
            }
            events.push(r);
        }
    }
    if ctx.json {
        let list: Vec<_> = events
            .iter()
            .map(|r| {
                serde_json::json!({
                    "position": r.position,
                    "aggregate_type": r.aggregate_type,
                    "aggregate_id": r.aggregate_id,
                    "sequence": r.sequence,
                    "event_type": r.event.event_type(),
                    "event_version": Event::current_version(r.event.event_type()),
                    "metadata": r.metadata,
                    "payload": r.event,
                })
            })
            .collect();
        output::json(&list)?;
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|r| {
            vec![
                r.position.to_string(),
                r.metadata.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                r.event.event_type().to_string(),
                r.metadata.actor.clone(),
                describe(&r.event).chars().take(100).collect(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["POS", "TIME (UTC)", "EVENT", "ACTOR", "DETAILS"], &rows)
    );
    Ok(0)
}
