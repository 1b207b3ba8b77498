//! End-to-end tests of the Darwin loop through the real `dgm` binary: the
//! native sandbox, the binpack suite, real Python, the offline `mutate`
//! proposer, and a fresh SQLite store per test. No mocks.
//!
//! Budgets are kept small (an attempt costs one to two seconds).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn binpack_agent() -> String {
    repo().join("examples/binpack").display().to_string()
}

/// No `dgm` command in these tests may take longer than this.
const COMMAND_LIMIT: Duration = Duration::from_secs(240);

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// The `dgm` binary on one fresh store, run from a scratch directory.
struct Dgm {
    dir: tempfile::TempDir,
    db: PathBuf,
    store: String,
}

impl Dgm {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("dgm.db");
        let store = format!("sqlite://{}", db.display());
        Self { dir, db, store }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, args: &[&str], log: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dgm"));
        cmd.args(args)
            .env("DGM_STORE", &self.store)
            .env_remove("RUST_LOG")
            .current_dir(self.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.path().join(format!("{log}.out"))).unwrap())
            .stderr(std::fs::File::create(self.path().join(format!("{log}.err"))).unwrap());
        cmd
    }

    fn spawn(&self, args: &[&str], log: &str) -> Child {
        self.command(args, log).spawn().expect("dgm starts")
    }

    fn read_log(&self, log: &str) -> (String, String) {
        let read = |ext: &str| {
            std::fs::read_to_string(self.path().join(format!("{log}.{ext}"))).unwrap_or_default()
        };
        (read("out"), read("err"))
    }

    /// Runs `dgm ARGS`, killing it (and failing) past `limit`.
    fn run_within(&self, args: &[&str], limit: Duration) -> Out {
        let began = Instant::now();
        let mut child = self.spawn(args, "last");
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if began.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                let (_, stderr) = self.read_log("last");
                panic!("dgm {args:?} still running after {limit:?}; stderr:\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (stdout, stderr) = self.read_log("last");
        Out {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
            elapsed: began.elapsed(),
        }
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_within(args, COMMAND_LIMIT)
    }

    fn ok(&self, args: &[&str]) -> Out {
        let out = self.run(args);
        assert_eq!(out.code, 0, "dgm {args:?} failed:\n{}", out.stderr);
        assert!(
            !out.stderr.contains("panicked"),
            "dgm {args:?} panicked:\n{}",
            out.stderr
        );
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("dgm {all:?}: not JSON ({e}):\n{}", out.stdout))
    }

    /// `dgm evolve ARGS --parallelism 2 --json`: the summaries, one per agent.
    fn evolve(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["evolve"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--parallelism", "2"]);
        self.json(&all)
            .as_array()
            .expect("a list of summaries")
            .clone()
    }

    fn history(&self) -> Vec<Value> {
        self.json(&["history"]).as_array().unwrap().clone()
    }

    fn archive(&self, agent: &str) -> Value {
        self.json(&["archive", agent])
    }

    fn run_show(&self, run: &str) -> Value {
        self.json(&["run", "show", run])
    }

    fn assert_projections_match(&self) {
        let out = self.run(&["projections", "rebuild", "--check"]);
        assert_eq!(
            out.code, 0,
            "rebuilt projections differ from the live ones:\n{}{}",
            out.stdout, out.stderr
        );
    }

    /// Counts events by type with a read-only query, without disturbing a
    /// running `dgm`. None while the store does not exist or is busy.
    fn count_events(&self, rt: &tokio::runtime::Runtime) -> Option<BTreeMap<String, u64>> {
        use sqlx::sqlite::SqliteConnectOptions;
        use sqlx::{ConnectOptions, Row};
        if !self.db.exists() {
            return None;
        }
        rt.block_on(async {
            let mut conn = SqliteConnectOptions::new()
                .filename(&self.db)
                .read_only(true)
                .busy_timeout(Duration::from_millis(200))
                .connect()
                .await
                .ok()?;
            let rows =
                sqlx::query("SELECT event_type, COUNT(*) AS n FROM events GROUP BY event_type")
                    .fetch_all(&mut conn)
                    .await
                    .ok()?;
            Some(
                rows.iter()
                    .map(|r| {
                        (
                            r.get::<String, _>("event_type"),
                            r.get::<i64, _>("n") as u64,
                        )
                    })
                    .collect(),
            )
        })
    }
}

fn event_type(e: &Value) -> &str {
    e["event_type"].as_str().unwrap_or_default()
}

fn payload(e: &Value) -> &Value {
    &e["payload"][event_type(e)]
}

fn events_of<'a>(history: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    history
        .iter()
        .filter(move |e| event_type(e) == kind)
        .map(payload)
}

fn summary_of<'a>(summaries: &'a [Value], agent: &str) -> &'a Value {
    summaries
        .iter()
        .find(|s| s["agent"] == agent)
        .unwrap_or_else(|| panic!("no summary for `{agent}` in {summaries:?}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The versions of an archive that have a parent (children of evolution).
fn children(archive: &Value) -> Vec<&Value> {
    archive["versions"]
        .as_object()
        .unwrap()
        .values()
        .filter(|v| v["parent"].is_string())
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A copy of `examples/binpack` named `name`, its suite an absolute path.
fn binpack_copy(dir: &Path, name: &str, suite: &Path) -> PathBuf {
    let agent = dir.join(name);
    copy_dir(&repo().join("examples/binpack"), &agent);
    let manifest = std::fs::read_to_string(agent.join("agent.toml")).unwrap();
    let renamed = manifest
        .replace("name = \"binpack\"", &format!("name = \"{name}\""))
        .replace(
            "suite = \"../../benchmarks/binpack\"",
            &format!("suite = {:?}", suite.display().to_string()),
        );
    assert_ne!(renamed, manifest);
    assert!(
        renamed.contains(&format!("name = \"{name}\"")) && !renamed.contains("../../"),
        "{renamed}"
    );
    std::fs::write(agent.join("agent.toml"), renamed).unwrap();
    agent
}

/// What the guarded harness does when `priority.py` is not the seed's.
#[derive(Clone, Copy)]
enum OnChange {
    /// Exits with an error: every child fails every task.
    Fail,
    /// Sleeps for an hour: every child's tasks hit the timeout.
    Hang,
}

/// A binpack copy run through `guard.py` (protected), which compares the
/// evolvable `priority.py` with a protected copy of the seed's and breaks
/// every child: the seed passes, any change to it fails or hangs.
fn guarded_binpack(dir: &Path, name: &str, suite: &Path, on_change: OnChange) -> PathBuf {
    let agent = binpack_copy(dir, name, suite);
    std::fs::copy(agent.join("priority.py"), agent.join("seed_priority.txt")).unwrap();
    let reaction = match on_change {
        OnChange::Fail => "sys.exit('guard: priority.py differs from the seed')",
        OnChange::Hang => "time.sleep(3600)",
    };
    let guard = format!(
        "import os, runpy, sys, time\n\
         here = os.path.dirname(os.path.abspath(__file__))\n\
         def read(name):\n    with open(os.path.join(here, name), 'rb') as f:\n        return f.read()\n\
         if read('priority.py') != read('seed_priority.txt'):\n    {reaction}\n\
         runpy.run_path(os.path.join(here, 'pack.py'), run_name='__main__')\n"
    );
    std::fs::write(agent.join("guard.py"), guard).unwrap();
    let manifest = std::fs::read_to_string(agent.join("agent.toml")).unwrap();
    let guarded = manifest
        .replace(
            "run = [\"python3\", \"pack.py\"]",
            "run = [\"python3\", \"guard.py\"]",
        )
        .replace(
            "protected = [\"pack.py\", \"agent.toml\"]",
            "protected = [\"pack.py\", \"agent.toml\", \"guard.py\", \"seed_priority.txt\"]",
        );
    assert!(
        guarded.contains("guard.py\"]") && guarded.contains("seed_priority.txt"),
        "{guarded}"
    );
    std::fs::write(agent.join("agent.toml"), guarded).unwrap();
    agent
}

/// The binpack suite with a per-task timeout of `secs`.
fn binpack_suite_with_timeout(dir: &Path, secs: u64) -> PathBuf {
    let suite = dir.join("suite-short-timeout");
    copy_dir(&repo().join("benchmarks/binpack"), &suite);
    let toml = std::fs::read_to_string(suite.join("suite.toml")).unwrap();
    let short = toml.replace(
        "[limits]\ntimeout_secs = 60",
        &format!("[limits]\ntimeout_secs = {secs}"),
    );
    assert_ne!(short, toml, "suite.toml's [limits] changed shape");
    std::fs::write(suite.join("suite.toml"), short).unwrap();
    suite
}

fn binpack_suite() -> PathBuf {
    repo().join("benchmarks/binpack")
}

/// Checks the log and projections of a completed run: every started attempt
/// finished exactly once, each generation holds `population` attempts, no
/// version was created twice.
fn assert_run_consistent(dgm: &Dgm, run: &str, generations: u32, population: u32) -> Vec<Value> {
    let history = dgm.history();
    let of_run = |e: &&Value| e["metadata"]["run_id"] == run;
    let started: Vec<&Value> = events_of(&history, "AttemptStarted")
        .filter(|e| e["run_id"] == run)
        .collect();
    let ids: BTreeSet<&str> = started
        .iter()
        .map(|e| e["attempt_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), started.len(), "an attempt started twice");
    assert_eq!(
        ids.len() as u32,
        generations * population,
        "attempts of {run}: {ids:?}"
    );
    let mut per_generation: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for e in &started {
        per_generation
            .entry(u(&e["generation"]))
            .or_default()
            .insert(u(&e["index"]));
    }
    let full: BTreeSet<u64> = (0..population as u64).collect();
    assert_eq!(
        per_generation.len() as u32,
        generations,
        "{per_generation:?}"
    );
    for (g, indices) in &per_generation {
        assert_eq!(indices, &full, "generation {g} of {run}");
    }

    let mut finished: BTreeMap<&str, u32> = BTreeMap::new();
    for e in events_of(&history, "AttemptFinished").filter(|e| e["run_id"] == run) {
        *finished
            .entry(e["attempt_id"].as_str().unwrap())
            .or_default() += 1;
        assert!(
            e["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "a decision without a reason: {e}"
        );
    }
    for id in &ids {
        assert_eq!(
            finished.get(id).copied(),
            Some(1),
            "attempt {id} must finish exactly once: {finished:?}"
        );
    }
    assert_eq!(
        finished.len(),
        ids.len(),
        "an AttemptFinished for an attempt never started"
    );

    let mut diagnosed: BTreeMap<&str, u32> = BTreeMap::new();
    for e in events_of(&history, "DiagnosisMade").filter(|e| e["run_id"] == run) {
        *diagnosed
            .entry(e["attempt_id"].as_str().unwrap())
            .or_default() += 1;
    }
    assert!(
        diagnosed.values().all(|n| *n == 1),
        "an attempt diagnosed twice: {diagnosed:?}"
    );

    let mut created: BTreeMap<String, u32> = BTreeMap::new();
    let mut created_by: BTreeMap<String, u32> = BTreeMap::new();
    for e in history.iter().filter(|e| event_type(e) == "VersionCreated") {
        *created
            .entry(payload(e)["version"].as_str().unwrap().to_string())
            .or_default() += 1;
        if of_run(&e) {
            *created_by
                .entry(
                    e["metadata"]["attempt_id"]
                        .as_str()
                        .unwrap_or("?")
                        .to_string(),
                )
                .or_default() += 1;
        }
    }
    assert!(
        created.values().all(|n| *n == 1),
        "a version created twice: {created:?}"
    );
    assert!(
        created_by.values().all(|n| *n == 1),
        "an attempt created two children: {created_by:?}"
    );

    let runs = dgm.json(&["runs"]);
    let row = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == run)
        .expect("the run is listed");
    assert_eq!(row["status"], "completed", "{row}");
    let ended = history
        .iter()
        .filter(|e| event_type(e) == "RunCompleted" && payload(e)["run_id"] == run)
        .count();
    assert_eq!(ended, 1, "exactly one RunCompleted");
    dgm.assert_projections_match();
    history
}

// ---------------------------------------------------------------------------

/// The README's main job, small: evolve the First Fit seed offline and keep
/// a lineage in the archive.
#[test]
fn evolves_binpack_offline_and_keeps_the_lineage() {
    let dgm = Dgm::new();
    let agent = binpack_agent();
    let summaries = dgm.evolve(&[
        &agent,
        "--generations",
        "3",
        "--population",
        "4",
        "--seed",
        "1",
    ]);
    assert_eq!(summaries.len(), 1);
    let s = &summaries[0];
    assert_eq!(s["agent"], "binpack");
    assert_eq!(u(&s["attempts"]), 12);
    assert_eq!(u(&s["generations"]), 3);
    assert_eq!(s["stop_reason"], "3 generations done");
    let counted = u(&s["admitted"]) + u(&s["rejected"]) + u(&s["invalid"]);
    assert_eq!(
        counted, 12,
        "every attempt is admitted, rejected or invalid: {s}"
    );
    assert!(u(&s["promoted"]) <= u(&s["admitted"]));
    let seed_score = s["seed_score"].as_f64().expect("the seed is scored");
    let best_score = s["best_score"].as_f64().expect("a best score");
    assert!(seed_score > 0.0, "{s}");
    assert!(
        best_score >= seed_score,
        "best {best_score} < seed {seed_score}"
    );
    assert!((s["gain"].as_f64().unwrap() - (best_score - seed_score)).abs() < 1e-12);
    let seed = s["seed_version"].as_str().unwrap();
    let run = s["run_id"].as_str().unwrap();

    let archive = dgm.archive("binpack");
    let versions = archive["versions"].as_object().unwrap();
    assert_eq!(versions[seed]["origin"], "seed");
    assert!(versions[seed]["parent"].is_null());
    let kids = children(&archive);
    assert!(!kids.is_empty(), "no child version in {archive}");
    for v in &kids {
        let parent = v["parent"].as_str().unwrap();
        assert!(
            versions.contains_key(parent),
            "{} has a parent {parent} that does not exist",
            v["version"]
        );
        assert_eq!(v["run_id"], run);
        let summary = v["summary"].as_str().unwrap();
        assert!(
            summary.starts_with("mutate") || summary.starts_with("crossover"),
            "{v}"
        );
    }
    assert!(
        kids.iter().any(|v| v["parent"] == seed),
        "some child descends from the seed directly"
    );
    let best = s["best_version"].as_str().unwrap();
    assert!(
        versions.contains_key(best),
        "the best version {best} is in the archive"
    );
    assert_eq!(versions[best]["admitted"], true);
    let active = archive["active"].as_str().unwrap();
    assert!(versions.contains_key(active));
    if u(&s["promoted"]) > 0 {
        assert_ne!(active, seed, "a promotion makes a child active");
        assert!(best_score > seed_score);
    } else {
        assert_eq!(active, seed);
    }

    // The checked-out best differs from First Fit only in the evolvable file.
    let out = dgm.path().join("best");
    dgm.ok(&[
        "checkout",
        "binpack",
        "best",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(out.join("pack.py")).unwrap(),
        std::fs::read(repo().join("examples/binpack/pack.py")).unwrap(),
        "a protected file changed"
    );

    assert_run_consistent(&dgm, run, 3, 4);
    // The human summary says what happened.
    let text = dgm.ok(&["run", "show", run]).stdout;
    assert!(
        text.contains("3 generations done") && text.contains("attempts 12"),
        "{text}"
    );
}

/// The decisions of a run, without run-specific ids: (generation, index,
/// parent, donor, child, outcome, score).
fn decisions(dgm: &Dgm, run: &str) -> Vec<(u64, u64, String, Value, Value, String, Value)> {
    let shown = dgm.run_show(run);
    shown["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let s = &a["started"];
            let f = &a["finished"];
            (
                u(&s["generation"]),
                u(&s["index"]),
                s["parent"].as_str().unwrap().to_string(),
                s["donor"].clone(),
                a["child"].clone(),
                f["outcome"].as_str().unwrap_or("unfinished").to_string(),
                f["score"].clone(),
            )
        })
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_decisions() {
    let agent = binpack_agent();
    let args = [
        agent.as_str(),
        "--generations",
        "2",
        "--population",
        "3",
        "--seed",
        "7",
    ];
    let mut runs = Vec::new();
    for _ in 0..2 {
        let dgm = Dgm::new();
        let summaries = dgm.evolve(&args);
        let run = summaries[0]["run_id"].as_str().unwrap().to_string();
        let list = decisions(&dgm, &run);
        assert_eq!(list.len(), 6, "{list:?}");
        assert!(list.iter().all(|d| d.5 != "unfinished"), "{list:?}");
        runs.push((run, list, summaries[0].clone()));
    }
    assert_ne!(runs[0].0, runs[1].0, "two runs, two ids");
    assert_eq!(runs[0].1, runs[1].1, "same seed, different decisions");
    for key in [
        "best_version",
        "best_score",
        "admitted",
        "promoted",
        "rejected",
        "invalid",
    ] {
        assert_eq!(runs[0].2[key], runs[1].2[key], "{key} differs");
    }
}

/// What the log held when the process was killed.
struct KillPoint {
    name: &'static str,
    /// Kill once this holds of the event counts.
    when: fn(&BTreeMap<String, u64>) -> bool,
}

fn n(counts: &BTreeMap<String, u64>, kind: &str) -> u64 {
    counts.get(kind).copied().unwrap_or(0)
}

#[test]
fn kill_9_in_the_middle_then_resume_loses_and_repeats_nothing() {
    const GENERATIONS: u32 = 4;
    const POPULATION: u32 = 3;
    let points = [
        KillPoint {
            // The seed is one VersionCreated; one more is the first child.
            name: "after the first child of generation 1 is created",
            when: |c| n(c, "VersionCreated") >= 2,
        },
        KillPoint {
            name: "in the middle of generation 2",
            when: |c| {
                n(c, "AttemptFinished") > POPULATION as u64
                    && n(c, "AttemptFinished") < 2 * POPULATION as u64
            },
        },
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let agent = binpack_agent();
    for point in &points {
        let dgm = Dgm::new();
        let generations = GENERATIONS.to_string();
        let population = POPULATION.to_string();
        let args = [
            "evolve",
            &agent,
            "--generations",
            &generations,
            "--population",
            &population,
            "--seed",
            "3",
            "--parallelism",
            "2",
            "--json",
        ];
        let mut child = dgm.spawn(&args, "killed");
        let began = Instant::now();
        let counts = loop {
            if let Some(status) = child.try_wait().unwrap() {
                let (_, err) = dgm.read_log("killed");
                panic!(
                    "{}: the run ended ({status}) before the kill point:\n{err}",
                    point.name
                );
            }
            assert!(
                began.elapsed() < COMMAND_LIMIT,
                "{}: the kill point never came",
                point.name
            );
            if let Some(counts) = dgm.count_events(&rt)
                && (point.when)(&counts)
            {
                break counts;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        child.kill().expect("SIGKILL"); // std sends SIGKILL on Unix
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{}",
            point.name
        );
        assert_eq!(
            n(&counts, "RunCompleted"),
            0,
            "{}: killed too late",
            point.name
        );

        // What the log holds now.
        let before = dgm.history();
        assert!(
            !before.iter().any(|e| event_type(e) == "RunCompleted"),
            "{}: the run completed before the kill",
            point.name
        );
        let versions_before: Vec<String> = events_of(&before, "VersionCreated")
            .map(|e| e["version"].as_str().unwrap().to_string())
            .collect();
        assert!(
            versions_before.len() >= 2,
            "{}: {versions_before:?}",
            point.name
        );
        let runs = dgm.json(&["runs"]);
        assert_eq!(runs.as_array().unwrap().len(), 1);
        let run = runs[0]["run_id"].as_str().unwrap().to_string();
        assert_ne!(runs[0]["status"], "completed");

        let resumed = dgm.json(&["resume", &run]);
        let s = &resumed.as_array().expect("summaries")[0];
        assert_eq!(s["run_id"], run.as_str());
        assert_eq!(
            u(&s["attempts"]),
            (GENERATIONS * POPULATION) as u64,
            "{}: {s}",
            point.name
        );
        assert_eq!(s["stop_reason"], format!("{GENERATIONS} generations done"));

        assert_run_consistent(&dgm, &run, GENERATIONS, POPULATION);
        let archive = dgm.archive("binpack");
        for v in &versions_before {
            assert!(
                archive["versions"].get(v).is_some(),
                "{}: version {v}, created before the kill, is gone",
                point.name
            );
        }
        // A completed run cannot be resumed again.
        let again = dgm.run(&["resume", &run]);
        assert_ne!(again.code, 0);
        assert!(again.stderr.contains("already ended"), "{}", again.stderr);
        assert!(!again.stderr.contains("panicked"), "{}", again.stderr);
    }
}

/// Ctrl-C stops after the attempts in flight, records the interruption, and
/// `dgm resume` finishes the budget.
#[test]
fn ctrl_c_stops_cleanly_and_resume_finishes_the_run() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dgm = Dgm::new();
    let agent = binpack_agent();
    let args = [
        "evolve",
        &agent,
        "--generations",
        "2",
        "--population",
        "2",
        "--seed",
        "9",
        "--parallelism",
        "2",
        "--json",
    ];
    let mut child = dgm.spawn(&args, "interrupted");
    let began = Instant::now();
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before Ctrl-C"
        );
        assert!(began.elapsed() < COMMAND_LIMIT, "no attempt ever started");
        if dgm
            .count_events(&rt)
            .is_some_and(|c| n(&c, "AttemptStarted") >= 1)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signals a child process this test started and still owns.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            began.elapsed() < COMMAND_LIMIT,
            "Ctrl-C did not stop the run"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = dgm.read_log("interrupted");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let s = &serde_json::from_str::<Vec<Value>>(&stdout).unwrap()[0];
    assert_eq!(s["stop_reason"], "interrupted", "{s}");
    assert_eq!(u(&s["attempts"]), 2, "the attempts in flight finish: {s}");
    let run = s["run_id"].as_str().unwrap().to_string();
    let history = dgm.history();
    assert_eq!(
        history
            .iter()
            .filter(|e| event_type(e) == "RunInterrupted")
            .count(),
        1
    );
    assert!(!history.iter().any(|e| event_type(e) == "RunCompleted"));
    assert_ne!(dgm.json(&["runs"])[0]["status"], "completed");

    let resumed = dgm.json(&["resume", &run]);
    assert_eq!(u(&resumed[0]["attempts"]), 4, "{resumed}");
    assert_eq!(resumed[0]["stop_reason"], "2 generations done");
    assert_run_consistent(&dgm, &run, 2, 2);
}

/// A kill -9 must never leave a generation half-drawn: all of a
/// generation's `AttemptStarted` events are written in one commit
/// (consecutive positions, one metadata stamp), so `dgm resume` sees either
/// the whole draw or none of it.
#[test]
fn a_generation_is_drawn_in_one_commit() {
    let dgm = Dgm::new();
    let summaries = dgm.evolve(&[
        &binpack_agent(),
        "--generations",
        "2",
        "--population",
        "3",
        "--seed",
        "5",
    ]);
    assert_eq!(u(&summaries[0]["attempts"]), 6, "{summaries:?}");
    let history = dgm.json(&["history"]);
    let mut by_generation: std::collections::BTreeMap<u64, Vec<&Value>> = Default::default();
    for e in history.as_array().unwrap() {
        if e["event_type"] == "AttemptStarted" {
            let g = e["payload"]["AttemptStarted"]["generation"]
                .as_u64()
                .unwrap();
            by_generation.entry(g).or_default().push(e);
        }
    }
    assert_eq!(by_generation.len(), 2);
    for (g, events) in by_generation {
        assert_eq!(events.len(), 3, "generation {g}");
        let positions: Vec<u64> = events
            .iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect();
        assert_eq!(
            positions,
            (positions[0]..positions[0] + 3).collect::<Vec<_>>(),
            "generation {g} is not one commit"
        );
        let stamps: BTreeSet<String> = events.iter().map(|e| e["metadata"].to_string()).collect();
        assert_eq!(
            stamps.len(),
            1,
            "generation {g}: one commit has one metadata stamp"
        );
    }
}

#[test]
fn three_agents_evolve_at_once() {
    let dgm = Dgm::new();
    let suite = binpack_suite();
    let names = ["alpha", "beta", "gamma"];
    let dirs: Vec<String> = names
        .iter()
        .map(|n| binpack_copy(dgm.path(), n, &suite).display().to_string())
        .collect();
    let mut args: Vec<&str> = dirs.iter().map(String::as_str).collect();
    args.extend_from_slice(&["--generations", "1", "--population", "2", "--seed", "11"]);
    let summaries = dgm.evolve(&args);
    assert_eq!(summaries.len(), 3, "{summaries:?}");
    let run_ids: BTreeSet<&str> = summaries
        .iter()
        .map(|s| s["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(run_ids.len(), 3, "three distinct runs");

    let runs = dgm.json(&["runs"]);
    assert_eq!(runs.as_array().unwrap().len(), 3);
    for name in names {
        let s = summary_of(&summaries, name);
        assert_eq!(u(&s["attempts"]), 2, "{s}");
        assert_eq!(s["stop_reason"], "1 generation done");
        let run = s["run_id"].as_str().unwrap();
        let row = runs
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["run_id"] == run)
            .unwrap();
        assert_eq!(row["agent"], name);
        assert_eq!(row["status"], "completed");
        let archive = dgm.archive(name);
        let kids = children(&archive);
        assert!(!kids.is_empty(), "`{name}` has no child: {archive}");
        for v in kids {
            assert_eq!(v["run_id"], run, "`{name}`'s child comes from its own run");
        }
        // Each actor's attempts belong to its own run and agent.
        let shown = dgm.run_show(run);
        assert_eq!(shown["run"]["agent"], name);
        assert_eq!(shown["attempts"].as_array().unwrap().len(), 2);
    }
    dgm.assert_projections_match();
}

#[test]
fn an_agent_whose_children_all_fail_ends_with_a_clear_summary() {
    let dgm = Dgm::new();
    let agent = guarded_binpack(dgm.path(), "brittle", &binpack_suite(), OnChange::Fail);
    let agent = agent.display().to_string();
    let out = dgm.run(&[
        "evolve",
        &agent,
        "--generations",
        "2",
        "--population",
        "2",
        "--seed",
        "2",
        "--parallelism",
        "2",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let summaries: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    let s = &summaries[0];
    assert_eq!(u(&s["attempts"]), 4, "{s}");
    assert_eq!(u(&s["admitted"]), 0, "{s}");
    assert_eq!(u(&s["promoted"]), 0, "{s}");
    assert!(u(&s["rejected"]) >= 1, "{s}");
    assert_eq!(u(&s["rejected"]) + u(&s["invalid"]), 4, "{s}");
    assert_eq!(s["acceptance_rate"].as_f64(), Some(0.0));
    assert_eq!(s["stop_reason"], "2 generations done");
    assert_eq!(
        s["best_version"], s["seed_version"],
        "the seed stays the best"
    );
    assert!(
        s["seed_score"].as_f64().is_some_and(|x| x > 0.0),
        "the seed itself passes: {s}"
    );
    assert_eq!(s["best_score"], s["seed_score"]);
    assert_eq!(s["gain"].as_f64(), Some(0.0));

    let run = s["run_id"].as_str().unwrap();
    let shown = dgm.run_show(run);
    for a in shown["attempts"].as_array().unwrap() {
        let f = &a["finished"];
        match f["outcome"].as_str() {
            Some("rejected") => {
                let reason = f["reason"].as_str().unwrap();
                assert!(reason.contains("first stage"), "{reason}");
                assert!(
                    reason.contains("crash") || reason.contains('×'),
                    "the failure category is named: {reason}"
                );
            }
            Some("invalid" | "duplicate") => {}
            other => panic!("unexpected outcome {other:?}: {a}"),
        }
    }
    let archive = dgm.archive("brittle");
    assert_eq!(archive["active"], s["seed_version"]);
    for v in children(&archive) {
        assert_ne!(v["admitted"], true, "a failing child was admitted: {v}");
    }
    // The human summary of the run says so too.
    let text = dgm.ok(&["run", "show", run]).stdout;
    assert!(
        text.contains("admitted 0") && text.contains("2 generations done"),
        "{text}"
    );
    assert!(text.contains("rejected"), "{text}");
    assert_run_consistent(&dgm, run, 2, 2);
}

#[test]
fn a_child_that_hangs_is_cut_off_and_remembered_as_a_timeout() {
    const TIMEOUT_SECS: u64 = 2;
    let dgm = Dgm::new();
    let suite = binpack_suite_with_timeout(dgm.path(), TIMEOUT_SECS);
    let agent = guarded_binpack(dgm.path(), "sleepy", &suite, OnChange::Hang)
        .display()
        .to_string();
    let out = dgm.run_within(
        &[
            "evolve",
            &agent,
            "--generations",
            "1",
            "--population",
            "2",
            "--seed",
            "4",
            "--parallelism",
            "2",
            "--json",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let s = &serde_json::from_str::<Vec<Value>>(&out.stdout).unwrap()[0];
    assert_eq!(u(&s["attempts"]), 2, "{s}");
    assert_eq!(u(&s["admitted"]), 0, "a hanging child was admitted: {s}");
    assert!(u(&s["rejected"]) >= 1, "{s}");
    assert_eq!(u(&s["rejected"]) + u(&s["invalid"]), 2, "{s}");
    // Two stage-1 evaluations of hanging children cost about two timeouts, not an hour.
    assert!(
        out.elapsed < Duration::from_secs(90),
        "took {:?}",
        out.elapsed
    );

    let run = s["run_id"].as_str().unwrap();
    let shown = dgm.run_show(run);
    let rejected: Vec<&Value> = shown["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["finished"]["outcome"] == "rejected")
        .collect();
    assert!(!rejected.is_empty());
    for a in &rejected {
        let reason = a["finished"]["reason"].as_str().unwrap();
        assert!(
            reason.contains("timeout"),
            "the reason names the timeout: {reason}"
        );
    }

    let timeouts = dgm.json(&[
        "memory",
        "trajectories",
        "--category",
        "timeout",
        "--agent",
        "sleepy",
    ]);
    let timeouts = timeouts.as_array().unwrap();
    assert!(
        !timeouts.is_empty(),
        "no timeout trajectory in the replay buffer"
    );
    let children: BTreeSet<&str> = rejected
        .iter()
        .filter_map(|a| a["child"].as_str())
        .collect();
    for t in timeouts {
        let t = &t["trajectory"];
        assert_eq!(t["outcome"], "failure");
        assert_eq!(t["error_category"], "timeout");
        assert!(
            children.contains(t["version"].as_str().unwrap()),
            "a timeout of the seed? {t}"
        );
        let wall = u(&t["wall_ms"]);
        assert!(
            (TIMEOUT_SECS * 1000 - 100..TIMEOUT_SECS * 1000 + 8000).contains(&wall),
            "wall_ms {wall}"
        );
    }
    // The seed itself never timed out.
    let failures = dgm.json(&[
        "memory",
        "trajectories",
        "--agent",
        "sleepy",
        "--version",
        s["seed_version"].as_str().unwrap(),
        "--outcome",
        "failure",
    ]);
    assert_eq!(failures.as_array().unwrap().len(), 0, "{failures}");
    assert_run_consistent(&dgm, run, 1, 2);
}

/// `dgm bench` on a directory whose harness hangs records a timeout and
/// finishes within the limit.
#[test]
fn bench_on_a_hanging_agent_times_out_quickly() {
    let dgm = Dgm::new();
    let suite = binpack_suite_with_timeout(dgm.path(), 2);
    let agent = guarded_binpack(dgm.path(), "stuck", &suite, OnChange::Hang);
    // Any change to priority.py makes the harness hang.
    std::fs::write(
        agent.join("priority.py"),
        "def priority(item, bins):\n    return [0.0 for b in bins]\n",
    )
    .unwrap();
    let (agent, suite) = (agent.display().to_string(), suite.display().to_string());
    let args = [
        "bench",
        &agent,
        "--suite",
        &suite,
        "--stage",
        "1",
        "--parallelism",
        "2",
    ];
    let out = dgm.run_within(&args, Duration::from_secs(120));
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        out.elapsed < Duration::from_secs(60),
        "took {:?}",
        out.elapsed
    );
    let timeouts = dgm.json(&["memory", "trajectories", "--category", "timeout"]);
    assert!(
        !timeouts.as_array().unwrap().is_empty(),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn a_proposal_that_cannot_be_made_is_an_invalid_attempt_not_an_error() {
    let dgm = Dgm::new();
    let agent = binpack_copy(dgm.path(), "unbalanced", &binpack_suite());
    // An EVOLVE-BLOCK-START without its END: the mutate proposer refuses it.
    let priority = std::fs::read_to_string(agent.join("priority.py")).unwrap();
    let broken = priority.replace("    # EVOLVE-BLOCK-END\n", "");
    assert_ne!(broken, priority);
    std::fs::write(agent.join("priority.py"), broken).unwrap();
    let agent = agent.display().to_string();
    let out = dgm.run(&[
        "evolve",
        &agent,
        "--generations",
        "2",
        "--population",
        "2",
        "--seed",
        "1",
        "--parallelism",
        "2",
        "--json",
    ]);
    assert_eq!(
        out.code, 0,
        "an invalid proposal is an outcome, not an error:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let s = &serde_json::from_str::<Vec<Value>>(&out.stdout).unwrap()[0];
    assert_eq!(u(&s["attempts"]), 4, "{s}");
    assert_eq!(u(&s["invalid"]), 4, "{s}");
    assert_eq!(u(&s["admitted"]) + u(&s["rejected"]), 0, "{s}");
    assert_eq!(s["best_version"], s["seed_version"]);
    let run = s["run_id"].as_str().unwrap();
    for a in dgm.run_show(run)["attempts"].as_array().unwrap() {
        let f = &a["finished"];
        assert_eq!(f["outcome"], "invalid", "{a}");
        let reason = f["reason"].as_str().unwrap();
        assert!(
            reason.contains("EVOLVE-BLOCK") && reason.contains("priority.py"),
            "{reason}"
        );
        assert!(a["child"].is_null(), "an invalid attempt has no child: {a}");
    }
    assert!(
        children(&dgm.archive("unbalanced")).is_empty(),
        "no version for an invalid proposal"
    );
    assert_run_consistent(&dgm, run, 2, 2);
}

/// Every proposal is stored as a patch that applies strictly: one whose
/// context does not match the parent is an error that says where, never a
/// silently skipped hunk.
#[test]
fn a_patch_that_does_not_apply_is_refused_with_its_reason() {
    use dgm_propose::patch::{self, PatchError, ValidationError};
    use dgm_propose::{CodeTree, FilePolicy};
    let seed = std::fs::read_to_string(repo().join("examples/binpack/priority.py")).unwrap();
    let parent = CodeTree::from_texts([
        ("priority.py", seed.as_str()),
        ("pack.py", "print('harness')\n"),
    ]);
    let child_text = seed.replace("score = 1.0", "score = -(b - item)");
    assert_ne!(child_text, seed);
    let child = CodeTree::from_texts([
        ("priority.py", child_text.as_str()),
        ("pack.py", "print('harness')\n"),
    ]);
    let diff = patch::diff(&parent, &child).unwrap();
    assert_eq!(
        patch::apply(&parent, &diff).unwrap(),
        child,
        "the patch round-trips"
    );

    // The parent drifted under the hunk: refused, naming the file and line.
    let drifted_text = seed.replace("score = 1.0", "score = 2.0");
    let drifted = CodeTree::from_texts([
        ("priority.py", drifted_text.as_str()),
        ("pack.py", "print('harness')\n"),
    ]);
    let line = seed
        .lines()
        .position(|l| l.contains("score = 1.0"))
        .unwrap()
        + 1;
    match patch::apply(&drifted, &diff) {
        Err(PatchError::Mismatch { path, at, .. }) => {
            assert_eq!(path, "priority.py");
            assert_eq!(at, line);
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    let policy = FilePolicy::new(&["priority.py".into()], &["pack.py".into()]);
    let error = patch::validate(&drifted, &diff, &policy).unwrap_err();
    assert!(
        matches!(error, ValidationError::Patch(PatchError::Mismatch { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("does not apply"), "{error}");

    // A patch of a protected file is refused even when it applies.
    let gamed = CodeTree::from_texts([
        ("priority.py", seed.as_str()),
        ("pack.py", "print('cheat')\n"),
    ]);
    let diff = patch::diff(&parent, &gamed).unwrap();
    assert!(matches!(
        patch::validate(&parent, &diff, &policy),
        Err(ValidationError::Protected { .. })
    ));
    // A patch for a file the parent lacks.
    let lacking = CodeTree::from_texts([("pack.py", "print('harness')\n")]);
    assert!(matches!(
        patch::apply(&lacking, &patch::diff(&parent, &child).unwrap()),
        Err(PatchError::WrongFile { .. })
    ));
}

/// A scorer that exits without reading the agent's output on its stdin (the
/// binpack scorer reads the output file instead) makes dgm's write to it
/// fail with EPIPE. That must cost nothing: with SIGPIPE at its default, the
/// whole process died silently mid-run (exit 141).
#[test]
fn a_scorer_that_ignores_its_stdin_does_not_kill_dgm() {
    let dgm = Dgm::new();
    let suite = dgm.path().join("quiet-suite");
    std::fs::create_dir_all(&suite).unwrap();
    std::fs::write(
        suite.join("suite.toml"),
        r#"[suite]
name = "quiet"
kind = "tasks"

[scorer]
command = ["python3", "-S", "-c", "print('{\"score\": 1.0, \"passed\": true}')"]

[[tasks]]
id = "loud"
input = { n = 1 }
"#,
    )
    .unwrap();
    let agent = dgm.path().join("loud");
    std::fs::create_dir_all(&agent).unwrap();
    std::fs::write(
        agent.join("agent.toml"),
        "name = \"loud\"\nlanguage = \"python\"\nrun = [\"python3\", \"loud.py\"]\nevolvable = [\"loud.py\"]\n",
    )
    .unwrap();
    // Far more than a pipe holds, so the write to the scorer cannot complete
    // before the scorer has exited.
    std::fs::write(agent.join("loud.py"), "print('x' * 900_000)\n").unwrap();
    let (agent, suite) = (agent.display().to_string(), suite.display().to_string());
    let out = dgm.run(&["bench", &agent, "--suite", &suite, "--json"]);
    assert_eq!(out.code, 0, "exit {}; stderr:\n{}", out.code, out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).expect("JSON report");
    assert_eq!(report[0]["metrics"]["pass_rate"], 1.0, "{report}");
}
