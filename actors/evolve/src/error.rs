//! What can stop a run.

#[derive(Debug, thiserror::Error)]
pub enum EvolveError {
    #[error(transparent)]
    Store(#[from] dgm_events::StoreError),
    #[error(transparent)]
    Projection(#[from] dgm_projections::ProjectionError),
    #[error("suite: {0}")]
    Suite(String),
    #[error("benchmark: {0}")]
    Bench(#[from] dgm_bench::RunError),
    #[error("{0}")]
    Config(String),
    #[error("run `{0}` not found (see `dgm runs`)")]
    UnknownRun(String),
    #[error("run `{0}` has already ended")]
    Ended(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("evaluation: {0}")]
    Evaluation(String),
}

impl From<dgm_memory::MemoryError> for EvolveError {
    fn from(e: dgm_memory::MemoryError) -> Self {
        match e {
            dgm_memory::MemoryError::Store(e) => Self::Store(e),
            other => Self::Config(other.to_string()),
        }
    }
}

impl From<crate::steps::evaluate::EvaluateError> for EvolveError {
    fn from(e: crate::steps::evaluate::EvaluateError) -> Self {
        use crate::steps::evaluate::EvaluateError;
        match e {
            EvaluateError::Bench(e) => Self::Bench(e),
            EvaluateError::Io(e) => Self::Io(e),
            EvaluateError::Other(e) => Self::Evaluation(e),
        }
    }
}
