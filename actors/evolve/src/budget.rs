//! When a run stops: its budgets (generations, attempts, time, model
//! tokens and dollars), a plateau without promotions, or the user.

use std::time::Duration;

use crate::config::EvolveConfig;
use crate::run_state::RunState;

/// What a run has used so far.
pub struct Spent {
    pub stopped: bool,
    /// The generation about to start.
    pub generation: u32,
    pub attempts_done: u32,
    pub elapsed: Duration,
    /// Tokens and dollars of the run's model calls.
    pub llm: (u64, f64),
}

/// Why the run stops now, if it does.
pub fn stop_reason(config: &EvolveConfig, state: &RunState, spent: &Spent) -> Option<String> {
    let generation = spent.generation;
    let (tokens, cost) = spent.llm;
    if spent.stopped {
        return Some("interrupted".into());
    }
    if let Some(max) = config.max_llm_tokens
        && tokens >= max
    {
        return Some(format!("LLM token budget spent ({tokens} of {max} tokens)"));
    }
    if let Some(max) = config.max_llm_cost_usd
        && cost >= max
    {
        return Some(format!("LLM dollar budget spent (${cost:.4} of ${max:.4})"));
    }
    if generation > config.generations {
        return Some(match config.generations {
            1 => "1 generation done".to_string(),
            n => format!("{n} generations done"),
        });
    }
    if let Some(max) = config.max_attempts
        && spent.attempts_done >= max
    {
        return Some(format!("{max} attempts done"));
    }
    if let Some(limit) = config.time_limit_secs
        && spent.elapsed >= Duration::from_secs(limit)
    {
        return Some(format!("time limit of {limit} s reached"));
    }
    if let Some(plateau) = config.plateau {
        let last_promotion = state
            .attempts
            .values()
            .filter(|a| a.finished.as_ref().is_some_and(|f| f.outcome == "promoted"))
            .filter_map(|a| a.started.as_ref().map(|s| s.generation))
            .max()
            .unwrap_or(0);
        if generation > plateau && generation - 1 - last_promotion >= plateau {
            return Some(format!("no promotion in {plateau} generations"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spent(generation: u32, attempts_done: u32) -> Spent {
        Spent {
            stopped: false,
            generation,
            attempts_done,
            elapsed: Duration::ZERO,
            llm: (0, 0.0),
        }
    }

    #[test]
    fn each_budget_stops_the_run_with_its_reason() {
        let mut config = EvolveConfig::new("a", "/s");
        config.generations = 3;
        let state = RunState::default();
        assert_eq!(stop_reason(&config, &state, &spent(3, 0)), None);
        assert_eq!(
            stop_reason(&config, &state, &spent(4, 0)).as_deref(),
            Some("3 generations done")
        );
        config.max_attempts = Some(5);
        assert_eq!(
            stop_reason(&config, &state, &spent(2, 5)).as_deref(),
            Some("5 attempts done")
        );
        config.max_llm_tokens = Some(100);
        let mut s = spent(1, 0);
        s.llm = (150, 0.0);
        assert_eq!(
            stop_reason(&config, &state, &s).as_deref(),
            Some("LLM token budget spent (150 of 100 tokens)")
        );
        s.stopped = true;
        assert_eq!(
            stop_reason(&config, &state, &s).as_deref(),
            Some("interrupted")
        );
        config = EvolveConfig::new("a", "/s");
        config.plateau = Some(2);
        assert_eq!(
            stop_reason(&config, &state, &spent(3, 0)).as_deref(),
            Some("no promotion in 2 generations")
        );
    }
}
