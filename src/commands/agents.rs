//! `dgm agent add`, `dgm agents`, `dgm archive`, `dgm rollback`, `dgm checkout`.

use std::path::Path;

use anyhow::{Context as _, bail};
use dgm_events::agent::write_dir_files;
use dgm_events::{AgentCommand, Metadata};
use dgm_projections::projector::{as_of, catch_up};
use dgm_projections::{AgentArchive, Archive, VersionRow};

use crate::context::Context;
use crate::output;

pub async fn add(ctx: &Context, dir: &Path) -> anyhow::Result<i32> {
    let r = dgm_evolve::builder::register(&ctx.store, dir, "cli").await?;
    if ctx.json {
        output::json(
            &serde_json::json!({"agent": r.agent, "seed_version": r.seed_version, "files": r.files}),
        )?;
    } else {
        println!(
            "registered agent `{}`: seed version {} ({} files)",
            r.agent, r.seed_version, r.files
        );
    }
    Ok(0)
}

pub async fn list(ctx: &Context) -> anyhow::Result<i32> {
    let rows = catch_up::<Archive>(&ctx.store).await?;
    if ctx.json {
        let list: Vec<_> = rows
            .values()
            .map(|a| {
                serde_json::json!({
                    "agent": a.agent, "language": a.manifest.language, "versions": a.versions.len(),
                    "active": a.active, "registered_at": a.registered_at,
                })
            })
            .collect();
        output::json(&list)?;
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no agents yet: register one with `dgm agent add DIR`");
        return Ok(0);
    }
    let table: Vec<Vec<String>> = rows
        .values()
        .map(|a| {
            vec![
                a.agent.clone(),
                a.manifest.language.clone(),
                a.versions.len().to_string(),
                a.active.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["AGENT", "LANGUAGE", "VERSIONS", "ACTIVE"], &table)
    );
    Ok(0)
}

/// The agent's archive now, or as of event `at`.
pub async fn load_agent(
    ctx: &Context,
    agent: &str,
    at: Option<u64>,
) -> anyhow::Result<AgentArchive> {
    let rows = match at {
        Some(n) => as_of::<Archive>(&ctx.store, n).await?,
        None => catch_up::<Archive>(&ctx.store).await?,
    };
    match rows.get(agent) {
        Some(a) => Ok(a.clone()),
        None => match at {
            Some(n) => bail!("agent `{agent}` was not registered as of event {n}"),
            None => bail!("agent `{agent}` is not registered (see `dgm agents`)"),
        },
    }
}

pub async fn archive(ctx: &Context, agent: &str, at: Option<u64>) -> anyhow::Result<i32> {
    let a = load_agent(ctx, agent, at).await?;
    if ctx.json {
        output::json(&a)?;
        return Ok(0);
    }
    // Lineage order: depth-first from the seeds, children by creation.
    let mut rows = Vec::new();
    let mut roots: Vec<&VersionRow> = a.versions.values().filter(|v| v.parent.is_none()).collect();
    roots.sort_by_key(|v| v.created_at);
    let mut stack: Vec<(&VersionRow, usize)> = roots.into_iter().rev().map(|v| (v, 0)).collect();
    while let Some((v, depth)) = stack.pop() {
        let status = match v.admitted {
            Some(true) => "admitted",
            Some(false) => "rejected",
            None => "pending",
        };
        let mut flags = Vec::new();
        if v.active {
            flags.push("ACTIVE");
        }
        if v.rolled_back {
            flags.push("rolled-back");
        }
        let best = v
            .scores
            .iter()
            .max_by_key(|(k, _)| k.rsplit('/').nth(1).and_then(|s| s.parse::<u32>().ok()))
            .map(|(k, s)| format!("{s:.4} ({k})"))
            .unwrap_or_else(|| "-".into());
        rows.push(vec![
            format!("{}{}", "  ".repeat(depth), v.version),
            v.created_at.to_string(),
            format!("{:?}", v.origin).to_lowercase(),
            v.children.to_string(),
            status.to_string(),
            flags.join(","),
            best,
            v.summary.chars().take(60).collect(),
        ]);
        let mut children: Vec<&VersionRow> = a
            .versions
            .values()
            .filter(|c| c.parent.as_deref() == Some(v.version.as_str()))
            .collect();
        children.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        stack.extend(children.into_iter().map(|c| (c, depth + 1)));
    }
    if let Some(n) = at {
        println!("archive of `{agent}` as of event {n}");
    }
    print!(
        "{}",
        output::table(
            &[
                "VERSION", "EVENT", "ORIGIN", "CHILDREN", "STATUS", "FLAGS", "SCORE", "SUMMARY"
            ],
            &rows
        )
    );
    Ok(0)
}

/// Resolves `VERSION` (id or unique prefix), `active` or `best`.
pub fn resolve_version<'a>(a: &'a AgentArchive, which: &str) -> anyhow::Result<&'a VersionRow> {
    let found = match which {
        "active" => a.active.as_ref().and_then(|v| a.versions.get(v)),
        "best" => best_version(a),
        prefix => {
            let matches: Vec<&VersionRow> = a
                .versions
                .values()
                .filter(|v| v.version.starts_with(prefix))
                .collect();
            if matches.len() > 1 {
                bail!(
                    "version prefix `{prefix}` is ambiguous for `{}` ({} matches)",
                    a.agent,
                    matches.len()
                );
            }
            matches.into_iter().next()
        }
    };
    found.ok_or_else(|| anyhow::anyhow!("agent `{}` has no version `{which}`", a.agent))
}

/// The admitted version with the best train score at the most complete
/// stage any version reached; the active version when nothing is scored.
pub fn best_version(a: &AgentArchive) -> Option<&VersionRow> {
    let scored = a
        .versions
        .values()
        .filter(|v| v.admitted == Some(true))
        .flat_map(|v| {
            v.scores.iter().filter_map(move |(key, score)| {
                let mut parts = key.rsplitn(3, '/');
                let split = parts.next()?;
                let stage: u32 = parts.next()?.parse().ok()?;
                (split == "train").then_some((stage, *score, v))
            })
        })
        .max_by(|(sa, xa, va), (sb, xb, vb)| {
            (sa, xa)
                .partial_cmp(&(sb, xb))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(vb.created_at.cmp(&va.created_at))
        })
        .map(|(_, _, v)| v);
    scored.or_else(|| a.active.as_ref().and_then(|v| a.versions.get(v)))
}

pub async fn rollback(
    ctx: &Context,
    agent: &str,
    to_version: Option<&str>,
    to_event: Option<u64>,
    reason: &str,
) -> anyhow::Result<i32> {
    let now = load_agent(ctx, agent, None).await?;
    let target = match (to_version, to_event) {
        (Some(v), _) => resolve_version(&now, v)?.version.clone(),
        (None, Some(n)) => {
            let head = ctx.store.head().await?;
            if n > head {
                bail!("event {n} does not exist yet (the log ends at {head})");
            }
            let then = load_agent(ctx, agent, Some(n)).await?;
            then.active.ok_or_else(|| {
                anyhow::anyhow!("agent `{agent}` had no active version as of event {n}")
            })?
        }
        (None, None) => bail!("give --to-version V or --to-event N"),
    };
    if now.active.as_deref() == Some(target.as_str()) {
        bail!("version {target} is already the active version of `{agent}`; nothing to roll back");
    }
    ctx.store
        .agent(
            agent,
            AgentCommand::Rollback {
                to_version: target.clone(),
                to_event,
                reason: reason.to_string(),
            },
            &Metadata::new("cli"),
        )
        .await?;
    let position = ctx.store.head().await?;
    if ctx.json {
        output::json(
            &serde_json::json!({"agent": agent, "from": now.active, "to": target, "event": position}),
        )?;
    } else {
        println!(
            "rolled back `{agent}` from {} to {target} (event {position})",
            now.active.as_deref().unwrap_or("-")
        );
    }
    Ok(0)
}

pub async fn checkout(ctx: &Context, agent: &str, which: &str, out: &Path) -> anyhow::Result<i32> {
    let a = load_agent(ctx, agent, None).await?;
    let v = resolve_version(&a, which)?;
    if out.exists()
        && std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} exists and is not empty; choose an empty or new directory",
            out.display()
        );
    }
    let files = ctx.store.get_tree(&v.tree_hash).await?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_dir_files(out, &files).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "checked out `{agent}` version {} ({} files) into {}",
        v.version,
        files.len(),
        out.display()
    );
    Ok(0)
}
