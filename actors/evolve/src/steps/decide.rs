//! Decide: admit or reject a child, and whether it is promoted — as plain
//! functions. Admission is basic function (the first stage's gate);
//! promotion is beating the best by the threshold, then holding on
//! validation and, when scoring is noisy, on a re-evaluation.

use dgm_events::AgentCommand;
use dgm_memory::EvaluationRecord;

/// What becomes of a child.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// `rejected`, `admitted` or `promoted`.
    pub outcome: &'static str,
    pub reason: String,
    pub score: Option<f64>,
}

/// The first look at a child's train stages.
#[derive(Debug, Clone, PartialEq)]
pub enum FirstLook {
    Decided(Verdict),
    /// Beats the best on train: promoted if it holds up (see [`confirmed`]).
    Contender {
        score: f64,
        best_version: String,
        best: f64,
    },
}

/// Judges a child by its first and last train stages against the best
/// other admitted version.
pub fn first_look(
    stage1: Option<&EvaluationRecord>,
    last: Option<&EvaluationRecord>,
    best: Option<(String, f64)>,
    threshold: f64,
) -> FirstLook {
    let verdict = |outcome, reason, score| {
        FirstLook::Decided(Verdict {
            outcome,
            reason,
            score,
        })
    };
    match stage1 {
        Some(r) if r.passed_gate => match (last.and_then(|r| r.score), best) {
            (Some(s), Some((best_version, b))) if beats(s, b, threshold) => FirstLook::Contender {
                score: s,
                best_version,
                best: b,
            },
            (Some(s), Some((best_v, b))) => verdict(
                "admitted",
                format!(
                    "train {s:.4} does not beat best {b:.4} ({best_v}) by more than {:.1}%",
                    threshold * 100.0
                ),
                Some(s),
            ),
            (Some(s), None) => verdict(
                "promoted",
                format!("train {s:.4}; no scored version to beat"),
                Some(s),
            ),
            (None, _) => verdict(
                "admitted",
                "passes the first stage but stopped at a later gate".to_string(),
                stage1.and_then(|r| r.score),
            ),
        },
        Some(r) => {
            let cats: Vec<String> = r
                .failures
                .iter()
                .map(|(c, n)| format!("{c} ×{n}"))
                .collect();
            verdict(
                "rejected",
                format!(
                    "fails the first stage's gate ({})",
                    if cats.is_empty() {
                        "low score".into()
                    } else {
                        cats.join(", ")
                    }
                ),
                r.score,
            )
        }
        None => verdict("rejected", "was not evaluated".to_string(), None),
    }
}

/// A contender's verdict once confirmation said `held` (what held) or
/// not (why not).
pub fn confirmed(
    score: f64,
    best_version: &str,
    best: f64,
    threshold: f64,
    held: Result<String, String>,
) -> Verdict {
    match held {
        Ok(why) => Verdict {
            outcome: "promoted",
            reason: format!(
                "train {score:.4} beats best {best:.4} ({best_version}) by more than {:.1}%; {why}",
                threshold * 100.0
            ),
            score: Some(score),
        },
        Err(why) => Verdict {
            outcome: "admitted",
            reason: format!("train {score:.4} beats best {best:.4} but {why}"),
            score: Some(score),
        },
    }
}

/// The validation check of a contender: what held, or why it did not.
pub fn validation_check(child: Option<f64>, best: Option<f64>) -> Result<String, String> {
    if holds_on_validation(child, best) {
        Ok(format!(
            "validation {} ≥ {}",
            crate::fmt_score(child),
            crate::fmt_score(best)
        ))
    } else {
        Err(format!(
            "regresses on validation ({} < {})",
            crate::fmt_score(child),
            crate::fmt_score(best)
        ))
    }
}

/// The re-evaluation check of a contender when scoring is noisy.
pub fn reevaluation_check(
    again: Option<f64>,
    best: Option<f64>,
    threshold: f64,
) -> Result<String, String> {
    let best = best.unwrap_or(f64::NEG_INFINITY);
    if again.is_some_and(|s| beats(s, best, threshold)) {
        Ok(format!("re-evaluation {}", crate::fmt_score(again)))
    } else {
        Err(format!(
            "does not hold on re-evaluation ({})",
            crate::fmt_score(again)
        ))
    }
}

/// What an attempt already recorded on the agent (a resumed attempt
/// records nothing twice).
#[derive(Debug, Clone, Copy, Default)]
pub struct Recorded {
    pub admitted: bool,
    pub rejected: bool,
    pub activated: bool,
}

/// The agent commands that record `outcome` for `version`: reject, or
/// admit (and, promoted, activate) — less what is already recorded.
pub fn agent_commands(
    outcome: &str,
    reason: &str,
    version: &str,
    recorded: Recorded,
) -> Vec<AgentCommand> {
    let mut commands = Vec::new();
    if outcome == "rejected" {
        if !recorded.rejected {
            commands.push(AgentCommand::Reject {
                version: version.into(),
                reason: reason.into(),
            });
        }
        return commands;
    }
    if !recorded.admitted {
        commands.push(AgentCommand::Admit {
            version: version.into(),
            reason: if outcome == "promoted" {
                "passes the first stage; promoted".into()
            } else {
                reason.into()
            },
        });
    }
    if outcome == "promoted" && !recorded.activated {
        commands.push(AgentCommand::Activate {
            version: version.into(),
            reason: reason.into(),
        });
    }
    commands
}

/// Does `child` beat `best` by more than `threshold` (relative)?
pub fn beats(child: f64, best: f64, threshold: f64) -> bool {
    if !child.is_finite() {
        return false;
    }
    if !best.is_finite() {
        return true;
    }
    if best > 0.0 {
        child > best * (1.0 + threshold)
    } else {
        child > best + threshold
    }
}

/// Validation may not regress (a tiny tolerance absorbs float noise).
pub fn holds_on_validation(child: Option<f64>, best: Option<f64>) -> bool {
    match (child, best) {
        (Some(c), Some(b)) => c + 1e-9 >= b,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Two scores of the same code disagree: evaluation is noisy.
pub fn noisy(first: Option<f64>, second: Option<f64>) -> bool {
    match (first, second) {
        (Some(a), Some(b)) => (a - b).abs() > 1e-9,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_relative() {
        assert!(beats(0.4822, 0.4655, 0.01)); // Best Fit over First Fit on binpack
        assert!(!beats(0.4660, 0.4655, 0.01));
        assert!(!beats(0.5, 0.5, 0.0));
        assert!(beats(0.02, 0.0, 0.01));
        assert!(!beats(f64::NAN, 0.1, 0.01));
    }

    fn record(passed_gate: bool, score: f64) -> EvaluationRecord {
        EvaluationRecord {
            version: "c".into(),
            stage: 1,
            split: "train".into(),
            score: Some(score),
            metrics: Default::default(),
            passed_gate,
            failures: [("crash".to_string(), 2)].into(),
        }
    }

    #[test]
    fn a_child_is_rejected_admitted_or_a_contender() {
        let best = Some(("b".to_string(), 0.5));
        let failed = record(false, 0.1);
        let FirstLook::Decided(v) = first_look(Some(&failed), None, best.clone(), 0.01) else {
            panic!("decided");
        };
        assert_eq!(v.outcome, "rejected");
        assert_eq!(v.reason, "fails the first stage's gate (crash ×2)");
        let small = record(true, 0.502);
        let FirstLook::Decided(v) = first_look(Some(&small), Some(&small), best.clone(), 0.01)
        else {
            panic!("decided");
        };
        assert_eq!(v.outcome, "admitted");
        let big = record(true, 0.6);
        assert_eq!(
            first_look(Some(&big), Some(&big), best, 0.01),
            FirstLook::Contender {
                score: 0.6,
                best_version: "b".into(),
                best: 0.5
            }
        );
        let FirstLook::Decided(v) = first_look(Some(&big), Some(&big), None, 0.01) else {
            panic!("decided");
        };
        assert_eq!(v.outcome, "promoted", "nothing to beat");
        let v = confirmed(0.6, "b", 0.5, 0.01, Err("regresses".into()));
        assert_eq!(
            (v.outcome, v.reason.as_str()),
            ("admitted", "train 0.6000 beats best 0.5000 but regresses")
        );
    }

    #[test]
    fn a_decision_is_recorded_once() {
        let fresh = Recorded::default();
        let names = |cs: Vec<AgentCommand>| -> Vec<&'static str> {
            cs.iter()
                .map(|c| match c {
                    AgentCommand::Reject { .. } => "reject",
                    AgentCommand::Admit { .. } => "admit",
                    AgentCommand::Activate { .. } => "activate",
                    _ => "other",
                })
                .collect()
        };
        assert_eq!(
            names(agent_commands("rejected", "r", "v", fresh)),
            ["reject"]
        );
        assert_eq!(
            names(agent_commands("admitted", "r", "v", fresh)),
            ["admit"]
        );
        assert_eq!(
            names(agent_commands("promoted", "r", "v", fresh)),
            ["admit", "activate"]
        );
        let admitted = Recorded {
            admitted: true,
            ..fresh
        };
        assert_eq!(
            names(agent_commands("promoted", "r", "v", admitted)),
            ["activate"]
        );
    }

    #[test]
    fn confirmation_checks_say_what_held() {
        assert_eq!(
            validation_check(Some(0.5), Some(0.4)),
            Ok("validation 0.5000 ≥ 0.4000".into())
        );
        assert!(validation_check(Some(0.3), Some(0.4)).is_err());
        assert!(reevaluation_check(Some(0.6), Some(0.5), 0.01).is_ok());
        assert!(reevaluation_check(Some(0.501), Some(0.5), 0.01).is_err());
        assert!(reevaluation_check(None, None, 0.01).is_err());
    }

    #[test]
    fn validation_and_noise() {
        assert!(holds_on_validation(Some(0.5), Some(0.5)));
        assert!(!holds_on_validation(Some(0.49), Some(0.5)));
        assert!(!holds_on_validation(None, Some(0.5)));
        assert!(noisy(Some(0.5), Some(0.51)));
        assert!(!noisy(Some(0.5), Some(0.5)));
    }
}
