//! `dgm projections rebuild [--check]`.

use dgm_projections::{check_all, rebuild_all};

use crate::context::Context;
use crate::output;

pub async fn rebuild(ctx: &Context, check: bool) -> anyhow::Result<i32> {
    if check {
        let diffs = check_all(&ctx.store).await?;
        if ctx.json {
            output::json(&serde_json::json!({"equal": diffs.is_empty(), "differences": diffs}))?;
        } else if diffs.is_empty() {
            println!(
                "every view equals its rebuild from the log ({} views)",
                dgm_projections::ALL.len()
            );
        } else {
            println!(
                "{} difference(s) between live views and a rebuild:",
                diffs.len()
            );
            for d in diffs.iter().take(50) {
                println!("  {d}");
            }
        }
        return Ok(if diffs.is_empty() { 0 } else { 1 });
    }
    let started = std::time::Instant::now();
    let done = rebuild_all(&ctx.store).await?;
    if ctx.json {
        output::json(
            &done
                .iter()
                .map(|(v, p)| serde_json::json!({"view": v, "position": p}))
                .collect::<Vec<_>>(),
        )?;
    } else {
        for (view, position) in &done {
            println!("rebuilt {view} up to event {position}");
        }
        println!("in {:.2?}", started.elapsed());
    }
    Ok(0)
}
