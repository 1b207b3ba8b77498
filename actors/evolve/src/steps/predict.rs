//! Predict: before a child is evaluated, a predictor may say whether its
//! evaluation is worth the sandbox time. A port — the default always says
//! "evaluate"; the world model plugs in here without touching the loop.

use async_trait::async_trait;
use dgm_propose::Proposal;

/// What a predictor sees of one proposed child.
pub struct PredictionRequest<'a> {
    pub attempt_id: &'a str,
    pub parent: &'a str,
    pub parent_score: Option<f64>,
    pub generation: u32,
    /// The diagnosis the proposal answers.
    pub diagnosis: &'a str,
    pub proposal: &'a Proposal,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    /// Evaluate the child.
    Evaluate,
    /// Do not: the attempt ends `skipped`, with this reason.
    Skip { reason: String },
}

#[async_trait]
pub trait Predictor: Send + Sync {
    async fn predict(&self, request: &PredictionRequest<'_>) -> Prediction;
}

/// Evaluates every child (no model).
pub struct EvaluateAll;

#[async_trait]
impl Predictor for EvaluateAll {
    async fn predict(&self, _: &PredictionRequest<'_>) -> Prediction {
        Prediction::Evaluate
    }
}

#[cfg(test)]
mod tests {
    use dgm_propose::CodeTree;

    use super::*;

    #[tokio::test]
    async fn the_default_evaluates_every_child() {
        let proposal = Proposal {
            files: CodeTree(Default::default()),
            kind: "mutate:constant".into(),
            summary: "changed a constant".into(),
        };
        let request = PredictionRequest {
            attempt_id: "r/g1/a0",
            parent: "v",
            parent_score: Some(0.5),
            generation: 1,
            diagnosis: "all pass",
            proposal: &proposal,
        };
        assert_eq!(EvaluateAll.predict(&request).await, Prediction::Evaluate);
    }
}
