//! Models and what they cost.
//!
//! A run may use several models; each is named as the server knows it, with
//! optional prices so that every call's cost can be logged and a dollar
//! budget enforced. `NAME@IN/OUT` gives the prices in USD per million prompt
//! and completion tokens (`gpt-4o-mini@0.15/0.6`); a model without prices
//! (a local server) costs nothing in dollars but still counts tokens.

use serde::{Deserialize, Serialize};

/// One model and its prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// The name the server knows (`gpt-4o-mini`, `llama3:8b`, `openai/gpt-4o`).
    pub name: String,
    /// USD per million prompt tokens.
    pub input_usd_per_mtok: f64,
    /// USD per million completion tokens.
    pub output_usd_per_mtok: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model `{spec}`: {reason} (expected NAME or NAME@IN/OUT with USD per million tokens)")]
pub struct ModelSpecError {
    pub spec: String,
    pub reason: String,
}

impl ModelSpec {
    /// A model that costs nothing in dollars.
    pub fn free(name: impl Into<String>) -> Self {
        Self::priced(name, 0.0, 0.0)
    }

    pub fn priced(name: impl Into<String>, input: f64, output: f64) -> Self {
        Self {
            name: name.into(),
            input_usd_per_mtok: input,
            output_usd_per_mtok: output,
        }
    }

    /// Parses `NAME` or `NAME@IN/OUT`.
    pub fn parse(spec: &str) -> Result<Self, ModelSpecError> {
        let error = |reason: &str| ModelSpecError {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (name, prices) = match spec.rsplit_once('@') {
            Some((name, prices)) => (name.trim(), Some(prices)),
            None => (spec.trim(), None),
        };
        if name.is_empty() {
            return Err(error("empty model name"));
        }
        let Some(prices) = prices else {
            return Ok(Self::free(name));
        };
        let (input, output) = prices
            .split_once('/')
            .ok_or_else(|| error("prices must be IN/OUT"))?;
        let parse = |p: &str| {
            p.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| error("prices must be numbers ≥ 0"))
        };
        Ok(Self::priced(name, parse(input)?, parse(output)?))
    }

    /// USD for one call.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (prompt_tokens as f64 * self.input_usd_per_mtok
            + completion_tokens as f64 * self.output_usd_per_mtok)
            / 1_000_000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_and_without_prices() {
        assert_eq!(
            ModelSpec::parse("llama3:8b").unwrap(),
            ModelSpec::free("llama3:8b")
        );
        let m = ModelSpec::parse("openai/gpt-4o@2.5/10").unwrap();
        assert_eq!(m, ModelSpec::priced("openai/gpt-4o", 2.5, 10.0));
        assert!((m.cost(1_000_000, 100_000) - 3.5).abs() < 1e-12);
        assert!(ModelSpec::parse("@1/2").is_err());
        assert!(ModelSpec::parse("m@1").is_err());
        assert!(ModelSpec::parse("m@x/2").is_err());
        assert!(ModelSpec::parse("m@-1/2").is_err());
    }
}
