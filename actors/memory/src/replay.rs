//! The replay buffer's writes: a benchmark stage report turned into events
//! — trajectories (full outputs as blobs), the benchmark's metrics, and the
//! version's evaluation. Used by the evolution loop (through the memory
//! port) and by `dgm bench`, so there is one way to record.

use std::collections::BTreeMap;

use dgm_bench::StageReport;
use dgm_events::*;

/// One recorded evaluation (one stage on one split), as the loop needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationRecord {
    pub version: String,
    pub stage: u32,
    pub split: String,
    pub score: Option<f64>,
    pub metrics: BTreeMap<String, f64>,
    pub passed_gate: bool,
    /// Error category → count over the evaluation's trajectories.
    pub failures: BTreeMap<String, u64>,
}

/// Who was evaluated, where.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub agent: Option<&'a str>,
    pub version: Option<&'a str>,
    /// 1-based stage number within the suite.
    pub stage: u32,
}

/// Appends the evaluation `evaluation_id` atomically (start, every
/// trajectory, completion) and, for an agent's version, `VersionEvaluated`.
pub async fn record_stage(
    store: &Store,
    meta: &Metadata,
    evaluation_id: &str,
    subject: &Subject<'_>,
    report: &StageReport,
) -> Result<EvaluationRecord, StoreError> {
    let mut events: Vec<Event> = vec![
        BenchmarkStarted {
            evaluation_id: evaluation_id.into(),
            agent: subject.agent.map(Into::into),
            version: subject.version.map(Into::into),
            suite: report.suite.clone(),
            stage: subject.stage,
            split: report.split.as_str().into(),
            tasks: report.tasks as u32,
        }
        .into(),
    ];
    // Every output in one write (none for outputs already stored).
    let outputs: Vec<&[u8]> = report
        .trajectories
        .iter()
        .flat_map(|t| [t.stdout.as_slice(), t.stderr.as_slice()])
        .filter(|o| !o.is_empty())
        .collect();
    let mut hashes = store.put_blobs(&outputs).await?.into_iter();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    for t in &report.trajectories {
        let stdout_blob = if t.stdout.is_empty() {
            None
        } else {
            hashes.next()
        };
        let stderr_blob = if t.stderr.is_empty() {
            None
        } else {
            hashes.next()
        };
        let category = t.error_category.map(|c| c.as_str().to_string());
        if let Some(c) = &category {
            *failures.entry(c.clone()).or_default() += 1;
        }
        events.push(
            TrajectoryRecorded {
                evaluation_id: evaluation_id.into(),
                trajectory: Trajectory {
                    agent: subject.agent.unwrap_or_default().into(),
                    version: subject.version.unwrap_or_default().into(),
                    suite: report.suite.clone(),
                    task: t.task_id.clone(),
                    tags: t.tags.clone(),
                    outcome: if t.passed() { "success" } else { "failure" }.into(),
                    score: Some(t.score).filter(|s| s.is_finite()),
                    error_category: category,
                    rationale: t.rationale.clone(),
                    log_excerpt: t.log_excerpt.clone(),
                    stdout_blob,
                    stderr_blob,
                    wall_ms: t.wall_ms.max(0.0) as u64,
                    cpu_ms: t.cpu_ms.max(0.0) as u64,
                    peak_memory_bytes: t.peak_memory_bytes,
                    tokens: t.tokens,
                    cost_usd: None,
                },
            }
            .into(),
        );
    }
    let metrics: BTreeMap<String, f64> = report
        .metrics()
        .into_iter()
        .filter(|(_, v)| v.is_finite())
        .collect();
    let score = Some(report.score).filter(|s| s.is_finite());
    let passed_gate = report.gate_passed();
    events.push(
        BenchmarkCompleted {
            evaluation_id: evaluation_id.into(),
            score,
            metrics: metrics.clone(),
            passed_gate,
        }
        .into(),
    );
    store
        .append(StreamType::Evaluation, evaluation_id, events, meta)
        .await?;
    if let (Some(agent), Some(version)) = (subject.agent, subject.version) {
        record_version_evaluated(
            store,
            meta,
            evaluation_id,
            agent,
            version,
            subject.stage,
            report.split.as_str(),
            &report.suite,
            score,
            &metrics,
        )
        .await?;
    }
    Ok(EvaluationRecord {
        version: subject.version.unwrap_or_default().into(),
        stage: subject.stage,
        split: report.split.as_str().into(),
        score,
        metrics,
        passed_gate,
        failures,
    })
}

/// The agent-side record of an evaluation (also used to repair one after a crash).
#[allow(clippy::too_many_arguments)]
pub async fn record_version_evaluated(
    store: &Store,
    meta: &Metadata,
    evaluation_id: &str,
    agent: &str,
    version: &str,
    stage: u32,
    split: &str,
    suite: &str,
    score: Option<f64>,
    metrics: &BTreeMap<String, f64>,
) -> Result<(), StoreError> {
    store
        .agent(
            agent,
            AgentCommand::RecordEvaluation(VersionEvaluated {
                agent: agent.into(),
                version: version.into(),
                suite: suite.into(),
                stage,
                split: split.into(),
                score,
                metrics: metrics.clone(),
                evaluation_id: evaluation_id.into(),
            }),
            meta,
        )
        .await
}
