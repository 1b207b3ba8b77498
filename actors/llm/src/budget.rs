//! The run's LLM budget, in tokens and dollars, shared by every call.
//!
//! The loop stops a run cleanly once the log shows the budget spent; this
//! counter also stops calls already in flight from starting new ones, so a
//! run overshoots by at most the calls that were on the wire.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Limits (none = unlimited) and what was spent so far.
#[derive(Debug, Default)]
pub struct Budget {
    limits: BudgetLimits,
    spent: Mutex<(u64, f64)>,
}

/// How much a run may spend on models.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetLimits {
    pub max_tokens: Option<u64>,
    pub max_cost_usd: Option<f64>,
}

impl BudgetLimits {
    /// Why the budget is spent after `tokens` and `cost`, if it is.
    pub fn exceeded(&self, tokens: u64, cost: f64) -> Option<String> {
        if let Some(max) = self.max_tokens
            && tokens >= max
        {
            return Some(format!("LLM token budget spent ({tokens} of {max} tokens)"));
        }
        if let Some(max) = self.max_cost_usd
            && cost >= max
        {
            return Some(format!("LLM dollar budget spent (${cost:.4} of ${max:.4})"));
        }
        None
    }
}

impl Budget {
    pub fn new(limits: BudgetLimits) -> Self {
        Self {
            limits,
            spent: Mutex::new((0, 0.0)),
        }
    }

    /// Starts from what an earlier part of the run already spent (resume).
    pub fn with_spent(self, tokens: u64, cost: f64) -> Self {
        if let Ok(mut s) = self.spent.lock() {
            *s = (tokens, cost);
        }
        self
    }

    pub fn limits(&self) -> BudgetLimits {
        self.limits
    }

    pub fn charge(&self, tokens: u64, cost: f64) {
        if let Ok(mut s) = self.spent.lock() {
            s.0 += tokens;
            s.1 += cost;
        }
    }

    /// (tokens, dollars) spent so far.
    pub fn spent(&self) -> (u64, f64) {
        self.spent.lock().map(|s| *s).unwrap_or((0, 0.0))
    }

    /// Why no further call may start, if none may.
    pub fn exhausted(&self) -> Option<String> {
        let (tokens, cost) = self.spent();
        self.limits.exceeded(tokens, cost)
    }
}
