//! The trusted side of scoring: running a suite's scorer command outside the
//! sandbox and refusing anything that is not a clean score.
//!
//! The scorer protocol (see docs/benchmarks.md): the scorer runs in the suite
//! directory with `DGM_TASK_ID`, `DGM_TASK_TAGS`, `DGM_TASK_SPLIT`,
//! `DGM_TASK_INPUT` (host path), `DGM_TASK_EXPECTED` (host path of a JSON file,
//! when the task has expected data), `DGM_AGENT_OUTPUT` / `DGM_AGENT_STDERR`
//! (host paths of the agent's captured output) and `DGM_AGENT_STATUS`; the
//! agent's stdout is also on its stdin. It prints one JSON object (the last
//! line of stdout that starts with `{`). NaN, infinities, out-of-range or
//! non-numeric scores, and garbage are failures with category `invalid_score`.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::report::{ErrorCategory, TestCaseResult, truncate};
use crate::suite::ScorerCommand;

/// What a check concluded about one task.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CheckOutcome {
    pub score: f64,
    pub passed: bool,
    pub category: Option<ErrorCategory>,
    pub rationale: Option<String>,
    pub metrics: BTreeMap<String, f64>,
    pub prediction: Option<bool>,
    pub tests: Vec<TestCaseResult>,
    pub tokens: Option<u64>,
}

impl CheckOutcome {
    pub fn fail(category: ErrorCategory, rationale: impl Into<String>) -> Self {
        Self {
            score: 0.0,
            passed: false,
            category: Some(category),
            rationale: Some(rationale.into()),
            ..Default::default()
        }
    }
}

const RESERVED: &[&str] = &[
    "score",
    "passed",
    "tokens",
    "prediction",
    "label",
    "metrics",
    "reason",
    "rationale",
    "message",
    "category",
    "error_category",
];

/// Parse and validate a scorer's stdout. Never trusts a value it cannot check.
pub fn parse_scorer_output(stdout: &[u8], pass_threshold: f64) -> CheckOutcome {
    let text = String::from_utf8_lossy(stdout);
    let candidate = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .map(str::to_string)
        .or_else(|| {
            text.lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_default();
    if candidate.is_empty() {
        return CheckOutcome::fail(
            ErrorCategory::InvalidScore,
            "scorer printed nothing (expected a JSON object with `score` and/or `passed`)",
        );
    }
    let value: Value = match serde_json::from_str(&candidate) {
        Ok(v) => v,
        Err(e) => {
            let lower = candidate.to_ascii_lowercase();
            let reason = if lower.contains("nan") || lower.contains("infinity") {
                format!(
                    "scorer printed a non-finite number (NaN or Infinity), which is never a valid score: {}",
                    truncate(&candidate, 120)
                )
            } else {
                format!(
                    "scorer printed garbage, not a JSON object ({e}): {}",
                    truncate(&candidate, 120)
                )
            };
            return CheckOutcome::fail(ErrorCategory::InvalidScore, reason);
        }
    };
    let Value::Object(obj) = value else {
        return CheckOutcome::fail(
            ErrorCategory::InvalidScore,
            format!(
                "scorer printed JSON that is not an object: {}",
                truncate(&candidate, 120)
            ),
        );
    };
    validate_metrics(&obj, pass_threshold)
}

/// Validate a metrics object (also used for OpenEvolve dicts).
pub fn validate_metrics(obj: &serde_json::Map<String, Value>, pass_threshold: f64) -> CheckOutcome {
    let score = match obj.get("score") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f.is_finite() => Some(f),
            _ => {
                return CheckOutcome::fail(
                    ErrorCategory::InvalidScore,
                    format!("score {n} is not a finite number"),
                );
            }
        },
        Some(other) => {
            return CheckOutcome::fail(
                ErrorCategory::InvalidScore,
                format!(
                    "score must be a number in 0..1, got {}",
                    truncate(&other.to_string(), 60)
                ),
            );
        }
    };
    if let Some(s) = score
        && !(0.0..=1.0).contains(&s)
    {
        return CheckOutcome::fail(
            ErrorCategory::InvalidScore,
            format!("score {s} is outside 0..1"),
        );
    }
    let passed = match obj.get("passed") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            return CheckOutcome::fail(
                ErrorCategory::InvalidScore,
                format!(
                    "passed must be true or false, got {}",
                    truncate(&other.to_string(), 60)
                ),
            );
        }
    };
    let (score, passed) = match (score, passed) {
        (None, None) => {
            return CheckOutcome::fail(
                ErrorCategory::InvalidScore,
                "scorer reported neither `score` nor `passed`",
            );
        }
        (Some(s), None) => (s, s >= pass_threshold),
        (None, Some(p)) => (if p { 1.0 } else { 0.0 }, p),
        (Some(s), Some(p)) => (s, p),
    };
    let mut metrics = BTreeMap::new();
    let mut add = |k: &str, v: &Value| {
        if let Some(f) = v.as_f64()
            && f.is_finite()
        {
            metrics.insert(k.to_string(), f);
        }
    };
    for (k, v) in obj {
        if !RESERVED.contains(&k.as_str()) {
            add(k, v);
        }
    }
    if let Some(Value::Object(m)) = obj.get("metrics") {
        for (k, v) in m {
            add(k, v);
        }
    }
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
    let rationale = text("reason")
        .or_else(|| text("rationale"))
        .or_else(|| text("message"));
    let category = if passed {
        None
    } else {
        Some(
            text("category")
                .or_else(|| text("error_category"))
                .and_then(|c| ErrorCategory::parse(&c))
                .unwrap_or(ErrorCategory::WrongAnswer),
        )
    };
    let rationale = if passed {
        rationale
    } else {
        Some(rationale.unwrap_or_else(|| format!("score {score:.4} below the pass threshold")))
    };
    CheckOutcome {
        score,
        passed,
        category,
        rationale,
        metrics,
        prediction: obj.get("prediction").and_then(Value::as_bool),
        tests: Vec::new(),
        tokens: obj.get("tokens").and_then(Value::as_u64),
    }
}

/// Run a trusted scorer command (outside the sandbox). Returns its stdout, or
/// a reason it failed (category `scorer_error`).
pub async fn run_scorer(
    cmd: &ScorerCommand,
    env: &[(String, String)],
    stdin: &[u8],
) -> Result<Vec<u8>, String> {
    let Some((prog, args)) = cmd.argv.split_first() else {
        return Err("empty scorer command".into());
    };
    let mut c = tokio::process::Command::new(prog);
    c.args(args)
        .current_dir(&cmd.cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = c
        .spawn()
        .map_err(|e| format!("cannot start scorer `{}`: {e}", cmd.argv.join(" ")))?;
    let mut child_in = child.stdin.take();
    let input = stdin.to_vec();
    let feed = async move {
        if let Some(mut i) = child_in.take() {
            // A scorer that ignores stdin closes it early: not an error.
            let _ = i.write_all(&input).await;
        }
    };
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let read_out = async move {
        let mut b = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.take(16 * 1024 * 1024).read_to_end(&mut b).await;
        }
        b
    };
    let read_err = async move {
        let mut b = Vec::new();
        if let Some(o) = err.as_mut() {
            let _ = o.take(1024 * 1024).read_to_end(&mut b).await;
        }
        b
    };
    let all = async {
        let ((), o, e) = tokio::join!(feed, read_out, read_err);
        let status = child.wait().await;
        (o, e, status)
    };
    match tokio::time::timeout(cmd.timeout, all).await {
        Err(_) => Err(format!("scorer timed out after {}", human(cmd.timeout))),
        Ok((_, e, Err(err))) => Err(format!("scorer failed: {err}; stderr: {}", tail(&e, 200))),
        Ok((o, e, Ok(status))) => {
            if status.success() {
                Ok(o)
            } else {
                Err(format!(
                    "scorer exited with {status}; stderr: {}",
                    tail(&e, 300)
                ))
            }
        }
    }
}

pub(crate) fn human(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The last `max` bytes of `b`, as one-line-ish text.
pub(crate) fn tail(b: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(b);
    let s = s.trim_end();
    let start = s.len().saturating_sub(max);
    let mut i = start;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    let t = &s[i..];
    if start > 0 {
        format!("…{t}")
    } else {
        t.to_string()
    }
}

/// Tokens the agent reported: the sum of every stderr line that is a JSON
/// object with an integer `tokens` field; if there is none, a top-level
/// `tokens` field of a JSON object on stdout.
pub fn reported_tokens(stdout: &[u8], stderr: &[u8]) -> Option<u64> {
    let mut sum = None::<u64>;
    for line in String::from_utf8_lossy(stderr).lines() {
        let l = line.trim();
        if !l.starts_with('{') || !l.contains("\"tokens\"") {
            continue;
        }
        if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(l)
            && let Some(n) = o.get("tokens").and_then(Value::as_u64)
        {
            sum = Some(sum.unwrap_or(0).saturating_add(n));
        }
    }
    if sum.is_some() {
        return sum;
    }
    let out = String::from_utf8_lossy(stdout);
    let t = out.trim();
    if t.starts_with('{')
        && t.contains("\"tokens\"")
        && let Ok(Value::Object(o)) = serde_json::from_str::<Value>(t)
    {
        return o.get("tokens").and_then(Value::as_u64);
    }
    None
}

/// Whether a crash looks like code that did not parse or compile.
pub fn looks_like_syntax_error(stderr: &[u8], stdout: &[u8]) -> bool {
    let check = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        s.contains("SyntaxError:")
            || s.contains("IndentationError:")
            || s.contains("TabError:")
            || s.contains("error[E")
            || s.contains("could not compile")
    };
    check(stderr) || check(stdout)
}
