//! Select: draw a generation's parents (and crossover donors) from the
//! archive's admitted versions, recorded as `AttemptStarted` events.
//!
//! The weights themselves are [`crate::selection`]'s; this step keeps the
//! candidates and the ranking of full-train scores current, version by
//! version, from what the log touched ([`Known::touched`]), so a generation
//! costs what changed, not the whole archive.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use dgm_events::{AttemptStarted, Event};
use dgm_projections::{AgentArchive, VersionRow};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::EvolveConfig;
use crate::known::Known;
use crate::run::TRAIN;
use crate::selection::{Candidate, Strategy, select};

/// Each version's children, by version id.
type Children = HashMap<String, BTreeSet<String>>;

/// A score ordered totally (the archive's scores are finite).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score(f64);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // + 0.0 makes -0.0 equal to 0.0, as `partial_cmp` has it.
        (self.0 + 0.0).total_cmp(&(other.0 + 0.0))
    }
}

/// The selection candidates and the ranking of admitted scores.
#[derive(Default)]
struct Kept {
    /// Admitted versions, in version order (the archive's).
    list: Vec<Candidate>,
    children: Children,
    /// Admitted versions with a full-train score, best last: by score, then
    /// the earliest created.
    ranked: BTreeSet<(Score, Reverse<u64>, String)>,
    /// Each ranked version's place in `ranked`.
    rank_of: HashMap<String, (Score, Reverse<u64>)>,
}

impl Kept {
    fn best(&self, except: Option<&str>) -> Option<(String, f64)> {
        self.ranked
            .iter()
            .rev()
            .find(|(_, _, v)| Some(v.as_str()) != except)
            .map(|(score, _, v)| (v.clone(), score.0))
    }

    fn rank(&mut self, version: &str, place: Option<(Score, Reverse<u64>)>) {
        if let Some((score, created)) = self.rank_of.remove(version) {
            self.ranked.remove(&(score, created, version.to_string()));
        }
        if let Some((score, created)) = place {
            self.ranked.insert((score, created, version.to_string()));
            self.rank_of.insert(version.to_string(), (score, created));
        }
    }
}

/// One agent's selection over one suite.
pub struct Selector {
    agent: String,
    suite: String,
    /// The archive key of the full-train score.
    full_train: String,
    kept: Mutex<Kept>,
}

impl Selector {
    pub fn new(agent: &str, suite: &str, last_stage: u32) -> Self {
        Self {
            agent: agent.into(),
            suite: suite.into(),
            full_train: dgm_projections::archive::score_key(suite, last_stage, TRAIN.as_str()),
            kept: Default::default(),
        }
    }

    /// The best admitted version on full train other than `except`, and
    /// its score, now: from the kept ranking, not a scan of the archive.
    pub fn best(&self, known: &mut Known, except: Option<&str>) -> Option<(String, f64)> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        self.update(&mut kept, known);
        kept.best(except)
    }

    /// This generation's parents (and donors, and seeds) as `AttemptStarted`
    /// events, drawn with the generation's own seed.
    pub fn draw(
        &self,
        known: &mut Known,
        config: &EvolveConfig,
        strategy: &Strategy,
        generation: Generation<'_>,
    ) -> Result<Vec<Event>, String> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        self.update(&mut kept, known);
        draw(&kept.list, config, strategy, generation)
    }

    /// Brings the kept candidates up to date with the versions whose rows
    /// changed since the last time.
    fn update(&self, kept: &mut Kept, known: &mut Known) {
        let touched = std::mem::take(&mut known.touched);
        let Some(archive) = known.archive.get(&self.agent) else {
            return;
        };
        let mut redo = BTreeSet::new();
        for (agent, version) in touched {
            if agent != self.agent {
                continue;
            }
            // A child's row changes its parent's candidate (children, wins).
            if let Some(parent) = archive
                .versions
                .get(&version)
                .and_then(|r| r.parent.clone())
            {
                kept.children
                    .entry(parent.clone())
                    .or_default()
                    .insert(version.clone());
                redo.insert(parent);
            }
            redo.insert(version);
        }
        for version in redo {
            let admitted = archive
                .versions
                .get(&version)
                .filter(|v| v.admitted == Some(true));
            let place = admitted.and_then(|v| {
                let score = v.scores.get(&self.full_train)?;
                Some((Score(*score), Reverse(v.created_at)))
            });
            kept.rank(&version, place);
            let candidate = admitted.map(|v| self.candidate(archive, v, &kept.children));
            let at = kept.list.binary_search_by(|c| c.id.as_str().cmp(&version));
            match (at, candidate) {
                (Ok(i), Some(c)) => kept.list[i] = c,
                (Ok(i), None) => {
                    kept.list.remove(i);
                }
                (Err(i), Some(c)) => kept.list.insert(i, c),
                (Err(_), None) => {}
            }
        }
        debug_assert_eq!(
            format!("{:?}", kept.list),
            format!("{:?}", self.candidates(archive)),
            "the kept candidates must equal a rebuild"
        );
        debug_assert_eq!(
            kept.best(None),
            best_version(archive, &self.full_train, None),
            "the kept ranking must equal a scan"
        );
    }

    /// Admitted versions as selection candidates — rebuilt from the whole
    /// archive (what the kept list must always equal).
    fn candidates(&self, archive: &AgentArchive) -> Vec<Candidate> {
        let mut children = Children::new();
        for child in archive.versions.values() {
            if let Some(parent) = &child.parent {
                children
                    .entry(parent.clone())
                    .or_default()
                    .insert(child.version.clone());
            }
        }
        archive
            .versions
            .values()
            .filter(|v| v.admitted == Some(true))
            .map(|v| self.candidate(archive, v, &children))
            .collect()
    }

    /// Version `v` as a selection candidate, scored on train at the deepest
    /// stage it reached.
    fn candidate(&self, archive: &AgentArchive, v: &VersionRow, children: &Children) -> Candidate {
        let score_of = |v: &VersionRow| v.score_on(&self.suite, TRAIN.as_str()).map(|(_, s)| s);
        let own = score_of(v).unwrap_or(0.0);
        let (mut wins, mut losses) = (0, 0);
        let scores = children
            .get(&v.version)
            .into_iter()
            .flatten()
            .filter_map(|c| archive.versions.get(c))
            .map(score_of);
        for score in scores {
            match score {
                Some(s) if s > own => wins += 1,
                _ => losses += 1,
            }
        }
        Candidate {
            id: v.version.clone(),
            score: own,
            children: v.children as usize,
            wins,
            losses,
            parent: v.parent.clone(),
            behaviour: v.behaviour_on(&self.suite, TRAIN.as_str()),
        }
    }
}

/// The best admitted version by the score under `key`, other than
/// `except` (ties: the earliest created) — a scan of the archive.
pub fn best_version(
    archive: &AgentArchive,
    key: &str,
    except: Option<&str>,
) -> Option<(String, f64)> {
    archive
        .versions
        .values()
        .filter(|v| v.admitted == Some(true) && Some(v.version.as_str()) != except)
        .filter_map(|v| v.scores.get(key).map(|s| (v, *s)))
        .max_by(|(a, sa), (b, sb)| {
            sa.partial_cmp(sb)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(b.created_at.cmp(&a.created_at))
        })
        .map(|(v, s)| (v.version.clone(), s))
}

/// The generation a draw is for.
#[derive(Debug, Clone, Copy)]
pub struct Generation<'a> {
    pub run_id: &'a str,
    pub number: u32,
    /// Attempts the run has finished before it.
    pub attempts_done: u32,
}

/// Draws `population` parents from `candidates` (fewer when the attempt
/// budget is nearly spent), each maybe with a crossover donor and with its
/// own proposal seed.
pub fn draw(
    candidates: &[Candidate],
    config: &EvolveConfig,
    strategy: &Strategy,
    at: Generation<'_>,
) -> Result<Vec<Event>, String> {
    let Generation {
        run_id,
        number: generation,
        attempts_done,
    } = at;
    let mut rng = ChaCha8Rng::seed_from_u64(
        config.seed ^ (generation as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let mut n = config.population;
    if let Some(max) = config.max_attempts {
        n = n.min(max.saturating_sub(attempts_done)).max(1);
    }
    let selection =
        select(strategy, candidates, n as usize, &mut rng).map_err(|e| e.to_string())?;
    let mut events = Vec::new();
    for (index, parent) in selection.chosen.iter().enumerate() {
        let donor = (candidates.len() > 1 && rng.gen_bool(config.crossover_rate.clamp(0.0, 1.0)))
            .then(|| {
                let others: Vec<&Candidate> =
                    candidates.iter().filter(|c| &c.id != parent).collect();
                others[rng.gen_range(0..others.len())].id.clone()
            });
        events.push(
            AttemptStarted {
                run_id: run_id.into(),
                attempt_id: format!("{run_id}/g{generation}/a{index}"),
                generation,
                index: index as u32,
                parent: parent.clone(),
                donor,
                selection: strategy.name().into(),
                weights: selection.weights.clone(),
                seed: rng.r#gen(),
            }
            .into(),
        );
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(run_id: &str, number: u32, attempts_done: u32) -> Generation<'_> {
        Generation {
            run_id,
            number,
            attempts_done,
        }
    }

    fn candidate(id: &str, score: f64) -> Candidate {
        Candidate {
            id: id.into(),
            score,
            children: 0,
            wins: 0,
            losses: 0,
            parent: None,
            behaviour: None,
        }
    }

    #[test]
    fn a_draw_is_a_function_of_the_seed_and_generation() {
        let candidates = [candidate("a", 0.4), candidate("b", 0.6)];
        let mut config = EvolveConfig::new("agent", "/suite");
        config.population = 3;
        config.seed = 5;
        let strategy = config.strategy().expect("strategy");
        let once = draw(&candidates, &config, &strategy, at("run-x", 2, 0)).expect("draw");
        let again = draw(&candidates, &config, &strategy, at("run-x", 2, 0)).expect("draw");
        assert_eq!(once, again);
        assert_eq!(once.len(), 3);
        let other = draw(&candidates, &config, &strategy, at("run-x", 3, 0)).expect("draw");
        assert_ne!(once, other, "each generation draws with its own seed");
        let Event::AttemptStarted(first) = &once[0] else {
            panic!("an AttemptStarted");
        };
        assert_eq!(first.attempt_id, "run-x/g2/a0");
    }

    #[test]
    fn the_attempt_budget_caps_the_last_draw() {
        let candidates = [candidate("a", 0.5)];
        let mut config = EvolveConfig::new("agent", "/suite");
        config.population = 4;
        config.max_attempts = Some(6);
        let strategy = config.strategy().expect("strategy");
        let events = draw(&candidates, &config, &strategy, at("r", 2, 4)).expect("draw");
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn scores_order_totally() {
        let mut kept = Kept::default();
        kept.rank("old", Some((Score(0.5), Reverse(1))));
        kept.rank("new", Some((Score(0.5), Reverse(2))));
        kept.rank("low", Some((Score(0.1), Reverse(3))));
        assert_eq!(kept.best(None), Some(("old".into(), 0.5)), "ties: earliest");
        assert_eq!(kept.best(Some("old")), Some(("new".into(), 0.5)));
        kept.rank("old", None);
        assert_eq!(kept.best(None), Some(("new".into(), 0.5)));
    }
}
