//! OpenEvolve / ShinkaEvolve compatibility: a directory with `evaluator.py`
//! (defining `evaluate(program_path) -> dict`, optionally `evaluate_stage1`
//! for a two-stage cascade) and a program with EVOLVE-BLOCK markers
//! runs unchanged.
//!
//! Trust decision: an OpenEvolve evaluator imports and runs the candidate
//! program, i.e. it executes untrusted code, so it runs INSIDE the sandbox,
//! from the suite's own copy (mounted read-only at `/dgm/suite`, so the
//! version cannot change it), on the version's program (`/dgm/agent/...`). A
//! small trusted harness (passed as `python3 -c`) loads the evaluator, sends
//! everything printed during evaluation to stderr, and prints the returned
//! dict on stdout behind a marker. dgm then validates it on the host: score =
//! `combined_score` (or `score_key`, or `score`, or the mean of the numeric
//! metrics, as OpenEvolve does), mapped through `score_range` to 0..1; NaN,
//! infinities, out-of-range values and non-numbers are `invalid_score`.
//! Caveat: program and evaluator share one Python process, so a hostile
//! program can forge the evaluator's result; the sandbox still contains it,
//! and the host-side validation still rejects non-finite or out-of-range
//! scores. Use a `tasks` suite with a scorer outside the sandbox when that
//! matters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dgm_sandbox::ExecResult;
use serde::Deserialize;
use serde_json::Value;

use crate::check::{CheckOutcome, tail, validate_metrics};
use crate::report::{ErrorCategory, truncate};
use crate::suite::{
    Check, Gate, SUITE_MOUNT, Split, Stage, Suite, SuiteError, SuiteKind, Task, TaskInput,
    TaskLimits,
};

pub const MARKER: &str = "DGM-OPENEVOLVE-RESULT ";

const HARNESS: &str = r#"
import importlib.util, json, math, os, sys, traceback, types
MARK = "DGM-OPENEVOLVE-RESULT "
real = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr
def clean(v):
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, dict):
        return {str(k): clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    try:
        f = float(v)
    except Exception:
        return str(v)
    if math.isnan(f): return "NaN"
    if math.isinf(f): return "Infinity" if f > 0 else "-Infinity"
    return f
def emit(o):
    real.write(MARK + json.dumps(o) + "\n"); real.flush()
try:
    import openevolve.evaluation_result  # noqa: F401
except Exception:
    from dataclasses import dataclass, field
    @dataclass
    class EvaluationResult:
        metrics: dict
        artifacts: dict = field(default_factory=dict)
    pkg = types.ModuleType("openevolve"); sub = types.ModuleType("openevolve.evaluation_result")
    sub.EvaluationResult = EvaluationResult; pkg.evaluation_result = sub
    sys.modules.setdefault("openevolve", pkg); sys.modules["openevolve.evaluation_result"] = sub
try:
    with open(os.environ["DGM_TASK_INPUT"]) as f:
        task = json.load(f)
    ev = os.environ["DGM_OE_EVALUATOR"]
    sys.path.insert(0, os.path.dirname(ev))
    spec = importlib.util.spec_from_file_location("evaluator", ev)
    mod = importlib.util.module_from_spec(spec); sys.modules["evaluator"] = mod
    spec.loader.exec_module(mod)
    fn = getattr(mod, task.get("function", "evaluate"), None) or getattr(mod, "evaluate")
    res = fn(os.path.join(os.environ["DGM_AGENT_DIR"], task["program"]))
    arts = None
    if hasattr(res, "metrics"):
        arts = getattr(res, "artifacts", None); res = res.metrics
    emit({"ok": True, "metrics": clean(res), "artifacts": clean(arts)})
except BaseException as e:
    emit({"ok": False, "error": "%s: %s" % (type(e).__name__, e), "traceback": traceback.format_exc()[-1500:]})
"#;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOpenEvolve {
    evaluator: Option<String>,
    program: Option<String>,
    score_key: Option<String>,
    score_range: Option<[f64; 2]>,
    /// Gate after `evaluate_stage1` (cascade), default 0.5 like OpenEvolve.
    cascade_threshold: Option<f64>,
    timeout_secs: Option<f64>,
    memory_mb: Option<u64>,
}

/// How to read an evaluator's dict.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenEvolveCheck {
    pub score_key: Option<String>,
    /// Raw scores in `[lo, hi]` map linearly onto 0..1.
    pub range: (f64, f64),
}

fn find_program(dir: &Path, evaluator: &str) -> Option<String> {
    if dir.join("initial_program.py").is_file() {
        return Some("initial_program.py".into());
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".py") && n != evaluator)
        .collect();
    names.sort();
    names.into_iter().find(|n| {
        std::fs::read_to_string(dir.join(n)).is_ok_and(|t| t.contains("EVOLVE-BLOCK-START"))
    })
}

/// Build an OpenEvolve suite from `dir`.
pub(crate) fn load(
    dir: &Path,
    raw: Option<&RawOpenEvolve>,
    mut limits: TaskLimits,
) -> Result<Suite, SuiteError> {
    let default = RawOpenEvolve::default();
    let raw = raw.unwrap_or(&default);
    let file = dir.join("suite.toml");
    let evaluator = raw
        .evaluator
        .clone()
        .unwrap_or_else(|| "evaluator.py".into());
    let ev_path = dir.join(&evaluator);
    let ev_text = std::fs::read_to_string(&ev_path).map_err(|e| SuiteError::io(&ev_path, e))?;
    if !ev_text.contains("def evaluate") {
        return Err(SuiteError::invalid(
            &ev_path,
            "evaluate",
            "evaluator defines no `evaluate(program_path)`",
        ));
    }
    let program = match &raw.program {
        Some(p) => p.clone(),
        None => find_program(dir, &evaluator).ok_or_else(|| {
            SuiteError::invalid(
                dir,
                "program",
                "no initial_program.py and no .py file with EVOLVE-BLOCK-START markers",
            )
        })?,
    };
    let range = match raw.score_range {
        Some([lo, hi]) if lo.is_finite() && hi.is_finite() && hi > lo => (lo, hi),
        Some(_) => {
            return Err(SuiteError::invalid(
                &file,
                "openevolve.score_range",
                "must be [low, high] with low < high",
            ));
        }
        None => (0.0, 1.0),
    };
    if let Some(t) = raw.timeout_secs {
        if !(t.is_finite() && t > 0.0) {
            return Err(SuiteError::invalid(
                &file,
                "openevolve.timeout_secs",
                "must be positive",
            ));
        }
        limits.timeout = std::time::Duration::from_secs_f64(t);
    }
    if let Some(m) = raw.memory_mb {
        limits.memory_bytes = m.max(1) * 1024 * 1024;
    }
    let task = |id: &str, function: &str| Task {
        id: id.into(),
        tags: vec![id.into()],
        split: Split::Train,
        input: TaskInput::Inline(
            serde_json::json!({"function": function, "program": program})
                .to_string()
                .into_bytes(),
        ),
        expected: None,
        label: None,
        limits: limits.clone(),
    };
    let cascade = ev_text.contains("def evaluate_stage1");
    let (tasks, stages) = if cascade {
        let th = raw.cascade_threshold.unwrap_or(0.5);
        (
            vec![task("stage1", "evaluate_stage1"), task("full", "evaluate")],
            vec![
                Stage {
                    name: "stage1".into(),
                    max_tasks: None,
                    tags: vec!["stage1".into()],
                    gate: Some(Gate {
                        min_score: Some(th),
                        min_pass_rate: None,
                    }),
                },
                Stage {
                    name: "full".into(),
                    max_tasks: None,
                    tags: vec!["full".into()],
                    gate: None,
                },
            ],
        )
    } else {
        (vec![task("evaluate", "evaluate")], vec![Stage::all()])
    };
    let mut env = vec![(
        "DGM_OE_EVALUATOR".to_string(),
        format!("{SUITE_MOUNT}/{evaluator}"),
    )];
    env.push(("PYTHONDONTWRITEBYTECODE".into(), "1".into()));
    env.push(("DGM_AGENT_DIR".into(), crate::runner::AGENT_MOUNT.into()));
    Ok(Suite {
        name: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "openevolve".into()),
        kind: SuiteKind::OpenEvolve,
        dir: dir.to_path_buf(),
        description: format!("OpenEvolve evaluator {evaluator} on {program}"),
        tasks,
        stages,
        check: Check::OpenEvolve(OpenEvolveCheck {
            score_key: raw.score_key.clone(),
            range,
        }),
        pass_threshold: 0.0,
        command: Some(vec!["python3".into(), "-c".into(), HARNESS.into()]),
        env,
        mounts: vec![dgm_sandbox::Mount {
            host: PathBuf::from(dir),
            sandbox: PathBuf::from(SUITE_MOUNT),
        }],
        verifiers: Vec::new(),
        requires_docker: None,
    })
}

/// Read the harness's marked line and validate the evaluator's dict.
pub(crate) fn outcome(check: &OpenEvolveCheck, res: &ExecResult) -> CheckOutcome {
    let text = String::from_utf8_lossy(&res.stdout);
    let Some(line) = text.lines().rev().find_map(|l| l.strip_prefix(MARKER)) else {
        return CheckOutcome::fail(
            ErrorCategory::InvalidScore,
            format!("the evaluator returned nothing: {}", tail(&res.stderr, 200)),
        );
    };
    let v: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            return CheckOutcome::fail(
                ErrorCategory::InvalidScore,
                format!("unreadable evaluator result: {e}"),
            );
        }
    };
    if v.get("ok").and_then(Value::as_bool) != Some(true) {
        let err = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        let tb = v.get("traceback").and_then(Value::as_str).unwrap_or("");
        let cat = if tb.contains("SyntaxError") || tb.contains("IndentationError") {
            ErrorCategory::SyntaxError
        } else {
            ErrorCategory::Crash
        };
        return CheckOutcome::fail(cat, format!("evaluator raised {}", truncate(err, 200)));
    }
    let Some(Value::Object(metrics)) = v.get("metrics") else {
        return CheckOutcome::fail(
            ErrorCategory::InvalidScore,
            "evaluate() did not return a dict",
        );
    };
    let key = check
        .score_key
        .clone()
        .or_else(|| {
            metrics
                .contains_key("combined_score")
                .then(|| "combined_score".to_string())
        })
        .or_else(|| metrics.contains_key("score").then(|| "score".to_string()));
    let raw = match &key {
        Some(k) => match metrics.get(k) {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            Some(other) => {
                return CheckOutcome::fail(
                    ErrorCategory::InvalidScore,
                    format!(
                        "`{k}` must be a finite number, got {}",
                        truncate(&other.to_string(), 60)
                    ),
                );
            }
            None => {
                return CheckOutcome::fail(
                    ErrorCategory::InvalidScore,
                    format!("evaluate() returned no `{k}`"),
                );
            }
        },
        None => {
            let nums: Vec<f64> = metrics.values().filter_map(Value::as_f64).collect();
            if nums.is_empty() {
                return CheckOutcome::fail(
                    ErrorCategory::InvalidScore,
                    "evaluate() returned no numeric metric",
                );
            }
            nums.iter().sum::<f64>() / nums.len() as f64
        }
    };
    if !raw.is_finite() {
        return CheckOutcome::fail(
            ErrorCategory::InvalidScore,
            format!("score {raw} is not finite"),
        );
    }
    let (lo, hi) = check.range;
    let score = (raw - lo) / (hi - lo);
    if !(0.0..=1.0).contains(&score) {
        return CheckOutcome::fail(
            ErrorCategory::InvalidScore,
            format!("score {raw} is outside the declared range [{lo}, {hi}]"),
        );
    }
    let mut obj = serde_json::Map::new();
    obj.insert("score".into(), serde_json::json!(score));
    let error = metrics
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_string);
    obj.insert("passed".into(), Value::Bool(error.is_none()));
    if let Some(e) = &error {
        obj.insert("reason".into(), Value::String(e.clone()));
    }
    let mut extra = BTreeMap::new();
    for (k, v) in metrics {
        if let Some(f) = v.as_f64()
            && f.is_finite()
        {
            extra.insert(k.clone(), f);
        }
    }
    let mut out = validate_metrics(&obj, 0.0);
    out.metrics = extra;
    out
}
