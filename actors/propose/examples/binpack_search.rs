//! Measures the offline proposer's search quality on the bin packing suite.
//!
//! The evolution loop lives elsewhere; this example is a minimal stand-in
//! (DGM-style or greedy parent selection, admit every valid child, optional
//! crossover) so the proposer can be tuned on its own. It evaluates
//! candidates with `binpack_eval.py` (a long-lived python3 process) on the
//! train split and reports the best version's excess on validation.
//!
//! `cargo run -p dgm-propose --example binpack_search -- [runs] [evaluations] [dgm|greedy|random]`

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use dgm_propose::{CodeTree, MutateProposer, ProposalRequest};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Evaluator {
    child: std::process::Child,
    reader: BufReader<std::process::ChildStdout>,
}

impl Evaluator {
    fn start(root: &str) -> Result<Self, String> {
        let mut child = Command::new("python3")
            .arg(format!("{root}/actors/propose/examples/binpack_eval.py"))
            .arg(format!("{root}/benchmarks/binpack/data"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| error.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        Ok(Self {
            child,
            reader: BufReader::new(stdout),
        })
    }

    fn excess(&mut self, code: &str, split: &str) -> Option<f64> {
        let request = format!(
            "{{\"code\": {}, \"split\": \"{split}\"}}\n",
            json_string(code)
        );
        let stdin = self.child.stdin.as_mut()?;
        stdin.write_all(request.as_bytes()).ok()?;
        stdin.flush().ok()?;
        let mut line = String::new();
        self.reader.read_line(&mut line).ok()?;
        let value = line
            .split("\"excess\": ")
            .nth(1)?
            .trim()
            .trim_end_matches('}');
        value.parse().ok()
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Member {
    code: String,
    excess: f64,
    children: usize,
}

fn score(excess: f64) -> f64 {
    5.0 / (5.0 + excess.max(0.0))
}

fn pick(archive: &[Member], strategy: &str, rng: &mut ChaCha8Rng) -> usize {
    match strategy {
        "greedy" => (0..archive.len())
            .min_by(|a, b| archive[*a].excess.total_cmp(&archive[*b].excess))
            .unwrap_or(0),
        "random" => rng.gen_range(0..archive.len()),
        _ => {
            // DGM's score_child_prop, on the suite's 0..1 score.
            let weights: Vec<f64> = archive
                .iter()
                .map(|m| {
                    1.0 / (1.0 + (-10.0 * (score(m.excess) - 0.5)).exp())
                        / (1.0 + m.children as f64)
                })
                .collect();
            let total: f64 = weights.iter().sum();
            let mut draw = rng.gen_range(0.0..total);
            for (index, weight) in weights.iter().enumerate() {
                if draw < *weight {
                    return index;
                }
                draw -= weight;
            }
            archive.len() - 1
        }
    }
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let runs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let budget: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(500);
    let strategy = args.get(3).cloned().unwrap_or_else(|| "dgm".into());
    let root = std::env::var("DGM_ROOT").unwrap_or_else(|_| ".".into());
    let seed_code = std::fs::read_to_string(format!("{root}/examples/binpack/priority.py"))
        .map_err(|e| e.to_string())?;
    let mut evaluator = Evaluator::start(&root)?;
    let first_fit = evaluator
        .excess(&seed_code, "validation")
        .ok_or("seed failed")?;
    let best_fit_code = seed_code.replace("score = 1.0", "score = -b");
    let best_fit = evaluator
        .excess(&best_fit_code, "validation")
        .ok_or("best fit failed")?;
    println!("validation: first fit {first_fit:.3}%, best fit {best_fit:.3}%");
    let proposer = MutateProposer::default();
    let mut finals = Vec::new();
    for run in 0..runs {
        let mut rng = ChaCha8Rng::seed_from_u64(run);
        let seed_excess = evaluator.excess(&seed_code, "train").ok_or("seed failed")?;
        let mut archive = vec![Member {
            code: seed_code.clone(),
            excess: seed_excess,
            children: 0,
        }];
        let mut seen: HashSet<String> = HashSet::from([seed_code.clone()]);
        let (mut evaluations, mut failures, mut duplicates, mut attempts) = (0, 0, 0, 0);
        while evaluations < budget && attempts < budget * 4 {
            attempts += 1;
            let parent = pick(&archive, &strategy, &mut rng);
            archive[parent].children += 1;
            let mut request = ProposalRequest::new(
                CodeTree::from_texts([("priority.py", archive[parent].code.as_str())]),
                vec!["priority.py".into()],
                vec![],
                rng.r#gen(),
            );
            if archive.len() > 1 && rng.gen_bool(0.1) {
                let donor = pick(&archive, &strategy, &mut rng);
                if donor != parent {
                    request.donor = Some(CodeTree::from_texts([(
                        "priority.py",
                        archive[donor].code.as_str(),
                    )]));
                }
            }
            let Ok(proposal) = proposer.propose_sync(&request) else {
                continue;
            };
            let Some(code) = proposal.files.text("priority.py").map(str::to_string) else {
                continue;
            };
            if !seen.insert(code.clone()) {
                duplicates += 1;
                continue;
            }
            evaluations += 1;
            match evaluator.excess(&code, "train") {
                Some(excess) => archive.push(Member {
                    code,
                    excess,
                    children: 0,
                }),
                None => failures += 1,
            }
        }
        let best = archive
            .iter()
            .min_by(|a, b| a.excess.total_cmp(&b.excess))
            .ok_or("empty archive")?;
        let validation = evaluator
            .excess(&best.code, "validation")
            .unwrap_or(f64::INFINITY);
        println!(
            "run {run}: {evaluations} evaluations ({failures} failed, {duplicates} duplicates skipped), best train {:.3}%, validation {validation:.3}%",
            best.excess
        );
        if std::env::var("SHOW_BEST").is_ok() {
            println!("{}", best.code);
        }
        finals.push(validation);
    }
    finals.sort_by(f64::total_cmp);
    println!(
        "{strategy}: median validation excess {:.3}% (best fit {best_fit:.3}%)",
        finals[finals.len() / 2]
    );
    Ok(())
}
