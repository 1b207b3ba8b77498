//! `dgm memory strategies` and `dgm memory trajectories`: the ReasoningBank
//! and the replay buffer.

use dgm_projections::projector::catch_up;
use dgm_projections::{ReasoningBank, ReplayBuffer, TrajectoryFilter};

use crate::context::Context;
use crate::output;

pub async fn strategies(ctx: &Context, agent: Option<&str>) -> anyhow::Result<i32> {
    let bank = catch_up::<ReasoningBank>(&ctx.store).await?;
    let list: Vec<_> = bank
        .values()
        .filter(|s| agent.is_none_or(|a| s.agent == a))
        .collect();
    if ctx.json {
        output::json(&list)?;
        return Ok(0);
    }
    if list.is_empty() {
        println!("no strategies yet: they are stored when an evolution promotes a child");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                s.strategy_id.clone(),
                s.agent.clone(),
                s.kind.clone(),
                s.uses.to_string(),
                s.wins.to_string(),
                format!("{:.0}%", s.win_rate * 100.0),
                if s.pruned {
                    "pruned".into()
                } else {
                    String::new()
                },
                s.summary.chars().take(60).collect(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &[
                "STRATEGY", "AGENT", "KIND", "USES", "WINS", "WIN RATE", "", "SUMMARY"
            ],
            &rows
        )
    );
    Ok(0)
}

pub async fn trajectories(
    ctx: &Context,
    filter: TrajectoryFilter,
    limit: usize,
) -> anyhow::Result<i32> {
    let buffer = catch_up::<ReplayBuffer>(&ctx.store).await?;
    let mut list: Vec<_> = buffer.values().filter(|r| filter.matches(r)).collect();
    let skip = list.len().saturating_sub(limit);
    list.drain(..skip);
    if ctx.json {
        output::json(&list)?;
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            let t = &r.trajectory;
            vec![
                r.position.to_string(),
                t.agent.clone(),
                t.version.clone(),
                t.task.clone(),
                t.outcome.clone(),
                output::score(t.score),
                t.error_category.clone().unwrap_or_default(),
                t.rationale
                    .clone()
                    .unwrap_or_default()
                    .chars()
                    .take(70)
                    .collect(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &[
                "POS",
                "AGENT",
                "VERSION",
                "TASK",
                "OUTCOME",
                "SCORE",
                "CATEGORY",
                "RATIONALE"
            ],
            &rows
        )
    );
    Ok(0)
}
