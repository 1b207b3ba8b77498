//! Parent selection: which archive version the next attempt starts from.
//!
//! The balance between exploiting the best versions and exploring the rest
//! decides whether an open-ended search keeps improving or collapses on one
//! lineage. This module implements the strategies of the anchors — DGM's
//! score-and-children weighting, fitness-proportional, HGM's clade-level
//! Thompson sampling, greedy and uniform — as plain functions of the archive
//! and an RNG, so a run is deterministic under its seed and every draw's
//! weights can be written into the event log.
//!
//! An open-ended archive fills up with clones: children whose edit did not
//! change what the program does (a constant in dead code, `x * 1.0`). Counted
//! one by one they swamp the draw — on binpack a run's archive held 122
//! First-Fit clones beside one Best Fit — so the proportional strategies
//! weigh each *behaviour* once: a clone group's weight uses the group's
//! score and all its members' children, and is shared evenly by its members.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

/// One archive version as selection sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Version id.
    pub id: String,
    /// Score in 0..1, higher is better. NaN and infinities count as 0; values are clamped to 0..1.
    pub score: f64,
    /// Children already proposed from this version.
    pub children: usize,
    /// Per-task wins of this version (HGM).
    pub wins: u64,
    /// Per-task losses of this version (HGM).
    pub losses: u64,
    /// The parent version's id, if any (HGM clades follow these links).
    pub parent: Option<String>,
    /// What the version did, when known (e.g. its train metrics): candidates
    /// with the same behaviour are clones of one program and share one weight
    /// under `dgm`, `fitness` and `random` (see [`clone_groups`]). `None`
    /// makes the candidate a group of its own.
    #[serde(default)]
    pub behaviour: Option<String>,
}

/// A parent-selection strategy and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "lowercase")]
pub enum Strategy {
    /// DGM's score_child_prop: sigmoid(lambda·(score − alpha0)) / (1 + children), sampled proportionally.
    Dgm { lambda: f64, alpha0: f64 },
    /// Fitness-proportional: weight = score (uniform when every score is 0).
    Fitness,
    /// HGM: one Beta(1 + clade wins, 1 + clade losses) sample per version; the highest samples win.
    Hgm,
    /// The best score (ties: the earliest candidate).
    Greedy,
    /// Uniform.
    Random,
}

/// DGM's default sigmoid steepness.
pub const DGM_LAMBDA: f64 = 10.0;
/// DGM's default sigmoid midpoint.
pub const DGM_ALPHA0: f64 = 0.5;

impl Strategy {
    /// DGM's strategy with its published parameters (λ = 10, α0 = 0.5).
    pub fn dgm() -> Self {
        Strategy::Dgm {
            lambda: DGM_LAMBDA,
            alpha0: DGM_ALPHA0,
        }
    }

    /// The name used on the command line and in events.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Dgm { .. } => "dgm",
            Strategy::Fitness => "fitness",
            Strategy::Hgm => "hgm",
            Strategy::Greedy => "greedy",
            Strategy::Random => "random",
        }
    }
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy::dgm()
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = SelectionError;

    /// Parses `dgm`, `fitness`, `hgm`, `greedy` or `random` (case-insensitive); `dgm` gets its defaults.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "dgm" => Ok(Strategy::dgm()),
            "fitness" => Ok(Strategy::Fitness),
            "hgm" => Ok(Strategy::Hgm),
            "greedy" => Ok(Strategy::Greedy),
            "random" => Ok(Strategy::Random),
            _ => Err(SelectionError::UnknownStrategy(text.to_string())),
        }
    }
}

/// Why no parent could be selected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectionError {
    /// The archive has no version to select from.
    #[error("the archive is empty: nothing to select a parent from")]
    EmptyArchive,
    /// The strategy name is not known.
    #[error("unknown selection strategy `{0}` (expected dgm, fitness, hgm, greedy or random)")]
    UnknownStrategy(String),
    /// A parameter makes the strategy meaningless (e.g. a NaN lambda).
    #[error("invalid selection parameter: {0}")]
    InvalidParameter(String),
}

/// The outcome of one selection: the chosen parents and the weights of the draw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// Chosen version ids, one per requested parent (repeats possible).
    pub chosen: Vec<String>,
    /// Per candidate, in input order: the selection probability for `dgm`,
    /// `fitness`, `random` and `greedy` (they sum to 1), and the Thompson
    /// sample for `hgm`.
    pub weights: Vec<(String, f64)>,
}

/// A score usable as a weight: NaN and infinities count as 0, the rest is clamped to 0..1.
pub fn sanitized_score(score: f64) -> f64 {
    if score.is_finite() {
        score.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// DGM's weight of one candidate: sigmoid(λ·(score − α0)) / (1 + children).
pub fn dgm_weight(candidate: &Candidate, lambda: f64, alpha0: f64) -> f64 {
    sigmoid(lambda * (sanitized_score(candidate.score) - alpha0))
        / (1.0 + candidate.children as f64)
}

/// Selects `n` parents from `candidates` with `strategy`, drawing from `rng` only.
pub fn select(
    strategy: &Strategy,
    candidates: &[Candidate],
    n: usize,
    rng: &mut impl Rng,
) -> Result<Selection, SelectionError> {
    if candidates.is_empty() {
        return Err(SelectionError::EmptyArchive);
    }
    match strategy {
        Strategy::Dgm { lambda, alpha0 } => {
            if !lambda.is_finite() || !alpha0.is_finite() {
                return Err(SelectionError::InvalidParameter(format!(
                    "lambda {lambda}, alpha0 {alpha0}"
                )));
            }
            let groups = clone_groups(candidates);
            let raw: Vec<f64> = groups
                .iter()
                .map(|g| dgm_weight(&g.as_candidate(), *lambda, *alpha0) / g.size as f64)
                .collect();
            Ok(proportional(candidates, &raw, n, rng))
        }
        Strategy::Fitness => {
            let raw: Vec<f64> = clone_groups(candidates)
                .iter()
                .map(|g| sanitized_score(g.score) / g.size as f64)
                .collect();
            Ok(proportional(candidates, &raw, n, rng))
        }
        Strategy::Random => {
            let raw: Vec<f64> = clone_groups(candidates)
                .iter()
                .map(|g| 1.0 / g.size as f64)
                .collect();
            Ok(proportional(candidates, &raw, n, rng))
        }
        Strategy::Greedy => {
            let mut best = 0;
            for (index, candidate) in candidates.iter().enumerate() {
                if sanitized_score(candidate.score) > sanitized_score(candidates[best].score) {
                    best = index;
                }
            }
            let weights = candidates
                .iter()
                .enumerate()
                .map(|(index, c)| (c.id.clone(), if index == best { 1.0 } else { 0.0 }))
                .collect();
            Ok(Selection {
                chosen: vec![candidates[best].id.clone(); n],
                weights,
            })
        }
        Strategy::Hgm => thompson_over_clades(candidates, n, rng),
    }
}

/// The clone group a candidate belongs to, as the proportional strategies weigh it.
#[derive(Debug, Clone, PartialEq)]
pub struct CloneGroup {
    /// The group's score (the best member's, should clones ever disagree).
    pub score: f64,
    /// Children proposed from any member.
    pub children: usize,
    /// Members.
    pub size: usize,
}

impl CloneGroup {
    fn as_candidate(&self) -> Candidate {
        Candidate {
            id: String::new(),
            score: self.score,
            children: self.children,
            wins: 0,
            losses: 0,
            parent: None,
            behaviour: None,
        }
    }
}

/// For each candidate, in input order, the group of candidates with its
/// behaviour (a candidate without one is alone in its group).
pub fn clone_groups(candidates: &[Candidate]) -> Vec<CloneGroup> {
    let mut totals: HashMap<&str, CloneGroup> = HashMap::new();
    for candidate in candidates {
        if let Some(behaviour) = candidate.behaviour.as_deref() {
            let group = totals.entry(behaviour).or_insert(CloneGroup {
                score: f64::NEG_INFINITY,
                children: 0,
                size: 0,
            });
            group.score = group.score.max(sanitized_score(candidate.score));
            group.children += candidate.children;
            group.size += 1;
        }
    }
    candidates
        .iter()
        .map(|candidate| match candidate.behaviour.as_deref() {
            Some(behaviour) => totals[behaviour].clone(),
            None => CloneGroup {
                score: sanitized_score(candidate.score),
                children: candidate.children,
                size: 1,
            },
        })
        .collect()
}

/// Draws `n` indices with replacement, proportionally to `raw` (uniformly when the weights are unusable).
fn proportional(candidates: &[Candidate], raw: &[f64], n: usize, rng: &mut impl Rng) -> Selection {
    let cleaned: Vec<f64> = raw
        .iter()
        .map(|w| if w.is_finite() && *w > 0.0 { *w } else { 0.0 })
        .collect();
    let total: f64 = cleaned.iter().sum();
    let probabilities: Vec<f64> = if total > 0.0 && total.is_finite() {
        cleaned.iter().map(|w| w / total).collect()
    } else {
        vec![1.0 / candidates.len() as f64; candidates.len()]
    };
    let chosen = (0..n)
        .map(|_| {
            let draw: f64 = rng.r#gen::<f64>();
            let mut cumulative = 0.0;
            let mut pick = probabilities.iter().rposition(|p| *p > 0.0).unwrap_or(0);
            for (index, probability) in probabilities.iter().enumerate() {
                cumulative += probability;
                if draw < cumulative && *probability > 0.0 {
                    pick = index;
                    break;
                }
            }
            candidates[pick].id.clone()
        })
        .collect();
    let weights = candidates
        .iter()
        .zip(probabilities)
        .map(|(c, p)| (c.id.clone(), p))
        .collect();
    Selection { chosen, weights }
}

/// Wins and losses of every candidate's clade: itself plus all its descendants in `candidates`.
pub fn clade_totals(candidates: &[Candidate]) -> Vec<(u64, u64)> {
    let index_of: HashMap<&str, usize> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    let mut totals = vec![(0u64, 0u64); candidates.len()];
    for candidate in candidates {
        let mut current = index_of.get(candidate.id.as_str()).copied();
        // A well-formed archive is a forest; the step bound guards against cycles in bad data.
        let mut steps = 0;
        while let Some(index) = current {
            if steps > candidates.len() {
                break;
            }
            steps += 1;
            totals[index].0 = totals[index].0.saturating_add(candidate.wins);
            totals[index].1 = totals[index].1.saturating_add(candidate.losses);
            current = candidates[index]
                .parent
                .as_deref()
                .and_then(|parent| index_of.get(parent).copied());
        }
    }
    totals
}

/// HGM: one Beta(1 + clade wins, 1 + clade losses) sample per candidate; the
/// `n` highest samples are chosen (cycling through the ranking when `n`
/// exceeds the archive). Ties go to the earliest candidate.
fn thompson_over_clades(
    candidates: &[Candidate],
    n: usize,
    rng: &mut impl Rng,
) -> Result<Selection, SelectionError> {
    let totals = clade_totals(candidates);
    let mut samples = Vec::with_capacity(candidates.len());
    for (wins, losses) in &totals {
        let beta = Beta::new(1.0 + *wins as f64, 1.0 + *losses as f64)
            .map_err(|error| SelectionError::InvalidParameter(error.to_string()))?;
        samples.push(beta.sample(rng));
    }
    let mut ranking: Vec<usize> = (0..candidates.len()).collect();
    ranking.sort_by(|a, b| samples[*b].total_cmp(&samples[*a]).then(a.cmp(b)));
    let chosen = (0..n)
        .map(|k| candidates[ranking[k % ranking.len()]].id.clone())
        .collect();
    let weights = candidates
        .iter()
        .zip(samples)
        .map(|(c, s)| (c.id.clone(), s))
        .collect();
    Ok(Selection { chosen, weights })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn candidate(id: &str, score: f64, children: usize, parent: Option<&str>) -> Candidate {
        Candidate {
            id: id.into(),
            score,
            children,
            wins: 0,
            losses: 0,
            parent: parent.map(str::to_string),
            behaviour: None,
        }
    }

    fn archive() -> Vec<Candidate> {
        vec![
            candidate("seed", 0.5, 3, None),
            candidate("a", 0.7, 0, Some("seed")),
            candidate("b", 0.3, 1, Some("seed")),
            candidate("c", 0.9, 0, Some("a")),
        ]
    }

    fn weight_of(selection: &Selection, id: &str) -> f64 {
        selection
            .weights
            .iter()
            .find(|(candidate, _)| candidate == id)
            .map(|(_, w)| *w)
            .unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn clones_share_one_weight_and_pool_their_children() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let clone = |id: &str, children| Candidate {
            behaviour: Some("first-fit".into()),
            ..candidate(id, 0.4, children, Some("seed"))
        };
        // Three clones of one behaviour (2 + 1 + 0 children) and one distinct version.
        let candidates = vec![
            clone("seed", 2),
            clone("x", 1),
            clone("y", 0),
            candidate("z", 0.6, 0, Some("seed")),
        ];
        let groups = clone_groups(&candidates);
        assert_eq!(groups[1].size, 3);
        assert_eq!(groups[1].children, 3);
        assert_eq!(groups[3].size, 1);
        // dgm: the group weighs sigmoid(-1) / (1 + 3), split three ways; z weighs sigmoid(1).
        let selection = select(&Strategy::dgm(), &candidates, 1, &mut rng).unwrap();
        let (group, alone) = (0.2689414213699951 / 4.0, 0.7310585786300049);
        let total = group + alone;
        for id in ["seed", "x", "y"] {
            assert!(
                close(weight_of(&selection, id), group / 3.0 / total),
                "{id}"
            );
        }
        assert!(close(weight_of(&selection, "z"), alone / total));
        // random: uniform over behaviours, not over copies.
        let selection = select(&Strategy::Random, &candidates, 1, &mut rng).unwrap();
        assert!(close(weight_of(&selection, "x"), 1.0 / 6.0));
        assert!(close(weight_of(&selection, "z"), 0.5));
        // fitness: 0.4 for the group, 0.6 for z.
        let selection = select(&Strategy::Fitness, &candidates, 1, &mut rng).unwrap();
        assert!(close(weight_of(&selection, "y"), 0.4 / 3.0));
        assert!(close(weight_of(&selection, "z"), 0.6));
        // greedy and hgm look at versions, not groups.
        let selection = select(&Strategy::Greedy, &candidates, 1, &mut rng).unwrap();
        assert_eq!(selection.chosen, vec!["z".to_string()]);
    }

    #[test]
    fn dgm_weights_match_score_child_prop() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let selection = select(&Strategy::dgm(), &archive(), 4, &mut rng).unwrap();
        // Raw: seed 0.5/4 = 0.125; a sigmoid(2) = 0.8807970779778823; b sigmoid(-2)/2 = 0.05960146101105877;
        // c sigmoid(4) = 0.9820137900379085. Total 2.0474123290268493.
        let raw = [
            0.125,
            0.8807970779778823,
            0.05960146101105877,
            0.9820137900379085,
        ];
        let total: f64 = raw.iter().sum();
        for (id, expected) in ["seed", "a", "b", "c"].iter().zip(raw) {
            assert!(close(weight_of(&selection, id), expected / total), "{id}");
        }
        assert!(
            close(weight_of(&selection, "c"), 0.4796365520103452),
            "{}",
            weight_of(&selection, "c")
        );
        assert!(close(dgm_weight(&archive()[0], 10.0, 0.5), 0.125));
        assert_eq!(selection.chosen.len(), 4);
        let custom = select(
            &Strategy::Dgm {
                lambda: 0.0,
                alpha0: 0.5,
            },
            &archive(),
            1,
            &mut rng,
        )
        .unwrap();
        // λ = 0: sigmoid is 1/2 everywhere, only children matter: 1/4, 1, 1/2, 1 → total 2.75.
        assert!(close(weight_of(&custom, "seed"), 0.25 / 2.75));
        assert!(close(weight_of(&custom, "b"), 0.5 / 2.75));
    }

    #[test]
    fn fitness_weights_are_proportional_to_score() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let selection = select(&Strategy::Fitness, &archive(), 2, &mut rng).unwrap();
        let expected = [
            ("seed", 0.5 / 2.4),
            ("a", 0.7 / 2.4),
            ("b", 0.3 / 2.4),
            ("c", 0.9 / 2.4),
        ];
        for (id, weight) in expected {
            assert!(close(weight_of(&selection, id), weight), "{id}");
        }
    }

    #[test]
    fn sampling_frequencies_follow_the_weights() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let selection = select(&Strategy::Fitness, &archive(), 20_000, &mut rng).unwrap();
        let share = selection.chosen.iter().filter(|id| *id == "c").count() as f64 / 20_000.0;
        assert!((share - 0.375).abs() < 0.015, "{share}");
    }

    #[test]
    fn all_zero_fitness_is_uniform_and_nan_counts_as_zero() {
        let zeros = vec![
            candidate("x", 0.0, 0, None),
            candidate("y", f64::NAN, 0, None),
            candidate("z", -1.0, 0, None),
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let selection = select(&Strategy::Fitness, &zeros, 300, &mut rng).unwrap();
        for id in ["x", "y", "z"] {
            assert!(close(weight_of(&selection, id), 1.0 / 3.0));
            assert!(selection.chosen.iter().any(|chosen| chosen == id));
        }
        let with_nan = vec![
            candidate("nan", f64::NAN, 0, None),
            candidate("ok", 0.2, 0, None),
            candidate("inf", f64::INFINITY, 0, None),
        ];
        let selection = select(&Strategy::Fitness, &with_nan, 50, &mut rng).unwrap();
        assert!(close(weight_of(&selection, "nan"), 0.0));
        assert!(close(weight_of(&selection, "inf"), 0.0));
        assert!(selection.chosen.iter().all(|id| id == "ok"));
        let greedy = select(&Strategy::Greedy, &with_nan, 1, &mut rng).unwrap();
        assert_eq!(greedy.chosen, vec!["ok"]);
        let dgm = select(&Strategy::dgm(), &with_nan, 1, &mut rng).unwrap();
        assert!(close(weight_of(&dgm, "nan"), weight_of(&dgm, "inf")));
    }

    #[test]
    fn greedy_takes_the_best_and_the_earliest_on_ties() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let selection = select(&Strategy::Greedy, &archive(), 3, &mut rng).unwrap();
        assert_eq!(selection.chosen, vec!["c", "c", "c"]);
        assert!(close(weight_of(&selection, "c"), 1.0) && close(weight_of(&selection, "a"), 0.0));
        let tied = vec![
            candidate("first", 0.8, 0, None),
            candidate("second", 0.8, 0, None),
        ];
        assert_eq!(
            select(&Strategy::Greedy, &tied, 1, &mut rng)
                .unwrap()
                .chosen,
            vec!["first"]
        );
    }

    #[test]
    fn random_is_uniform() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let selection = select(&Strategy::Random, &archive(), 8_000, &mut rng).unwrap();
        for id in ["seed", "a", "b", "c"] {
            assert!(close(weight_of(&selection, id), 0.25));
            let share = selection
                .chosen
                .iter()
                .filter(|chosen| *chosen == id)
                .count() as f64
                / 8_000.0;
            assert!((share - 0.25).abs() < 0.02, "{id}: {share}");
        }
    }

    #[test]
    fn hgm_aggregates_clades_and_samples_thompson() {
        let mut candidates = archive();
        candidates[0].wins = 1; // seed
        candidates[1].wins = 5; // a
        candidates[2].losses = 7; // b
        candidates[3].wins = 10; // c, child of a
        candidates[3].losses = 2;
        let totals = clade_totals(&candidates);
        assert_eq!(totals, vec![(16, 9), (15, 2), (0, 7), (10, 2)]);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let selection = select(&Strategy::Hgm, &candidates, 2, &mut rng).unwrap();
        assert_eq!(selection.weights.len(), 4);
        assert!(
            selection
                .weights
                .iter()
                .all(|(_, sample)| (0.0..=1.0).contains(sample))
        );
        let best = selection
            .weights
            .iter()
            .max_by(|x, y| x.1.total_cmp(&y.1))
            .unwrap();
        assert_eq!(selection.chosen[0], best.0);
        assert_ne!(selection.chosen[0], selection.chosen[1]);
        // Over many draws the strong clade of `a` wins far more often than `b`'s losing one.
        let mut a_wins = 0;
        let mut b_wins = 0;
        for _ in 0..2_000 {
            let pick = select(&Strategy::Hgm, &candidates, 1, &mut rng).unwrap();
            a_wins += usize::from(pick.chosen[0] == "a");
            b_wins += usize::from(pick.chosen[0] == "b");
        }
        assert!(a_wins > 10 * b_wins.max(1), "a {a_wins}, b {b_wins}");
        // Cycles in bad data do not hang.
        let cyclic = vec![
            candidate("x", 0.5, 0, Some("y")),
            candidate("y", 0.5, 0, Some("x")),
        ];
        assert_eq!(
            select(&Strategy::Hgm, &cyclic, 3, &mut rng)
                .unwrap()
                .chosen
                .len(),
            3
        );
    }

    #[test]
    fn same_rng_seed_same_selection() {
        for strategy in ["dgm", "fitness", "hgm", "greedy", "random"] {
            let strategy: Strategy = strategy.parse().unwrap();
            let first =
                select(&strategy, &archive(), 5, &mut ChaCha8Rng::seed_from_u64(77)).unwrap();
            let again =
                select(&strategy, &archive(), 5, &mut ChaCha8Rng::seed_from_u64(77)).unwrap();
            assert_eq!(first, again, "{strategy}");
        }
    }

    #[test]
    fn empty_archive_and_unknown_names_are_errors() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(
            select(&Strategy::dgm(), &[], 1, &mut rng),
            Err(SelectionError::EmptyArchive)
        );
        assert!(matches!(
            "best".parse::<Strategy>(),
            Err(SelectionError::UnknownStrategy(_))
        ));
        assert_eq!(
            " DGM ".parse::<Strategy>().unwrap(),
            Strategy::Dgm {
                lambda: 10.0,
                alpha0: 0.5
            }
        );
        assert_eq!(Strategy::Hgm.to_string(), "hgm");
        let bad = Strategy::Dgm {
            lambda: f64::NAN,
            alpha0: 0.5,
        };
        assert!(matches!(
            select(&bad, &archive(), 1, &mut rng),
            Err(SelectionError::InvalidParameter(_))
        ));
        assert_eq!(
            select(&Strategy::Random, &archive(), 0, &mut rng)
                .unwrap()
                .chosen
                .len(),
            0
        );
    }
}
