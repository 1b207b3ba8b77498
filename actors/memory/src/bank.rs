//! The ReasoningBank's rules, as plain functions: a strategy's win rate
//! after one more use, and when a strategy that keeps failing is pruned.

/// A strategy is pruned once used at least `min_uses` times with a win
/// rate below `below`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PruneRule {
    pub min_uses: u64,
    pub below: f64,
}

impl PruneRule {
    /// Whether a strategy with these counts (after the use being recorded)
    /// is to be pruned, and its win rate.
    pub fn judge(&self, uses: u64, wins: u64) -> (bool, f64) {
        let rate = win_rate(uses, wins);
        (uses >= self.min_uses && rate < self.below, rate)
    }
}

/// wins / uses (0 before the first use).
pub fn win_rate(uses: u64, wins: u64) -> f64 {
    if uses == 0 {
        0.0
    } else {
        wins as f64 / uses as f64
    }
}

/// Why a strategy was pruned, for its event.
pub fn prune_reason(uses: u64, rate: f64) -> String {
    format!("win rate {:.0}% after {uses} uses", rate * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruned_only_after_enough_uses_below_the_rate() {
        let rule = PruneRule {
            min_uses: 5,
            below: 0.4,
        };
        assert_eq!(rule.judge(4, 0), (false, 0.0));
        assert_eq!(rule.judge(5, 1), (true, 0.2));
        assert_eq!(rule.judge(5, 2), (false, 0.4));
        assert_eq!(win_rate(0, 0), 0.0);
        assert_eq!(prune_reason(6, 1.0 / 3.0), "win rate 33% after 6 uses");
    }
}
