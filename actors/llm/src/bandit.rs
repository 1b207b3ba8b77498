//! Which model to ask next: UCB over improvement per unit cost.
//!
//! ShinkaEvolve-style: each configured model is an arm; its value is the
//! score improvement its proposals bought per dollar spent on them (plus a
//! tiny per-token term so free local models still have a cost), normalised
//! by the best arm, plus an exploration bonus `c·sqrt(2 ln N / n)`. An arm
//! never tried is tried first, in the order the models were given.

use std::sync::Mutex;

/// Cost per token charged to every arm on top of its dollars, so a model
/// without prices is not infinitely cheap.
const TOKEN_COST: f64 = 1e-9;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArmStats {
    pub model: String,
    /// Times chosen.
    pub chosen: u64,
    /// Proposals decided (feedback received).
    pub decided: u64,
    /// Sum of positive improvements.
    pub reward: f64,
    /// Dollars (plus the token term) spent on its proposals.
    pub cost: f64,
}

impl ArmStats {
    /// Improvement per unit cost so far.
    pub fn rate(&self) -> f64 {
        if self.cost <= 0.0 {
            0.0
        } else {
            self.reward / self.cost
        }
    }
}

/// A UCB1 bandit over models.
#[derive(Debug)]
pub struct Bandit {
    arms: Mutex<Vec<ArmStats>>,
    exploration: f64,
}

impl Bandit {
    pub fn new(models: impl IntoIterator<Item = String>) -> Self {
        Self {
            arms: Mutex::new(
                models
                    .into_iter()
                    .map(|model| ArmStats {
                        model,
                        ..Default::default()
                    })
                    .collect(),
            ),
            exploration: 0.5,
        }
    }

    /// The exploration weight `c` (default 0.5).
    pub fn with_exploration(mut self, c: f64) -> Self {
        self.exploration = c;
        self
    }

    /// Picks an arm (index into the models) and counts it as chosen.
    pub fn choose(&self) -> usize {
        let Ok(mut arms) = self.arms.lock() else {
            return 0;
        };
        if arms.is_empty() {
            return 0;
        }
        let pick = match arms.iter().position(|a| a.chosen == 0) {
            Some(untried) => untried,
            None => {
                let total: u64 = arms.iter().map(|a| a.chosen).sum();
                let best = arms.iter().map(ArmStats::rate).fold(0.0, f64::max);
                let value = |a: &ArmStats| {
                    let exploit = if best > 0.0 { a.rate() / best } else { 0.0 };
                    exploit
                        + self.exploration * (2.0 * (total as f64).ln() / a.chosen as f64).sqrt()
                };
                let mut pick = 0;
                for (i, arm) in arms.iter().enumerate() {
                    if value(arm) > value(&arms[pick]) {
                        pick = i;
                    }
                }
                pick
            }
        };
        arms[pick].chosen += 1;
        pick
    }

    /// Counts an arm as chosen without choosing (a resumed run's history).
    pub fn chosen_before(&self, arm: usize) {
        if let Ok(mut arms) = self.arms.lock()
            && let Some(a) = arms.get_mut(arm)
        {
            a.chosen += 1;
        }
    }

    /// Charges a call's cost to an arm.
    pub fn charge(&self, arm: usize, cost_usd: f64, tokens: u64) {
        if let Ok(mut arms) = self.arms.lock()
            && let Some(a) = arms.get_mut(arm)
        {
            a.cost += cost_usd + tokens as f64 * TOKEN_COST;
        }
    }

    /// Credits an arm with a decided proposal's improvement (negative counts as 0).
    pub fn reward(&self, arm: usize, improvement: Option<f64>) {
        if let Ok(mut arms) = self.arms.lock()
            && let Some(a) = arms.get_mut(arm)
        {
            a.decided += 1;
            a.reward += improvement
                .filter(|i| i.is_finite())
                .unwrap_or(0.0)
                .max(0.0);
        }
    }

    pub fn stats(&self) -> Vec<ArmStats> {
        self.arms.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_that_pays_gets_most_pulls() {
        // "cheap" improves by 0.01 for $0.001; "pricey" by 0.02 for $0.01:
        // cheap buys 5x the improvement per dollar.
        let bandit = Bandit::new(["pricey".to_string(), "cheap".to_string()]);
        let mut pulls = [0u32; 2];
        for _ in 0..200 {
            let arm = bandit.choose();
            pulls[arm] += 1;
            let (cost, gain) = if arm == 0 {
                (0.01, 0.02)
            } else {
                (0.001, 0.01)
            };
            bandit.charge(arm, cost, 1000);
            bandit.reward(arm, Some(gain));
        }
        assert!(pulls[1] > pulls[0] * 3, "{pulls:?}");
        assert!(pulls[0] >= 1, "every arm is tried: {pulls:?}");
    }

    #[test]
    fn untried_arms_go_first_and_losses_count_as_zero() {
        let bandit = Bandit::new(["a".to_string(), "b".to_string(), "c".to_string()]);
        assert_eq!(
            (bandit.choose(), bandit.choose(), bandit.choose()),
            (0, 1, 2)
        );
        bandit.reward(0, Some(-3.0));
        bandit.reward(1, None);
        assert_eq!(bandit.stats()[0].reward, 0.0);
        assert_eq!(bandit.stats()[1].decided, 1);
    }
}
