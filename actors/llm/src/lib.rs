//! LLM proposers for dgm, and the agent that improves itself.
//!
//! dgm's evolution loop asks a [`dgm_propose::Proposer`] for children. This
//! crate adds the two that need a model or the agent itself:
//!
//! - [`LlmProposer`] (`--proposer llm`): any OpenAI-compatible server
//!   (OpenAI, vLLM, Ollama, llama.cpp, OpenRouter), several models chosen by
//!   a UCB [`bandit`], every call's tokens, latency and cost recorded,
//!   budgets, retries with backoff, timeouts, strict SEARCH/REPLACE
//!   [`edits`] with mismatches fed back, user-overridable [`prompt`]
//!   templates, and DGM-style diagnosis.
//! - [`SelfProposer`] (`--proposer self`): runs the agent's own `improve`
//!   entry point in the sandbox on a copy of its code.
//!
//! [`mock`] is the OpenAI-compatible server every test talks to.

pub mod bandit;
pub mod budget;
pub mod client;
pub mod edits;
pub mod mock;
pub mod models;
pub mod prompt;
pub mod proposer;
pub mod self_improve;

pub use budget::{Budget, BudgetLimits};
pub use client::{ApiKey, ChatClient, ClientConfig};
pub use models::ModelSpec;
pub use prompt::Templates;
pub use proposer::{LlmConfig, LlmConfigError, LlmProposer};
pub use self_improve::{SelfConfig, SelfProposer};

/// Makes `ring` the process's TLS crypto provider (dgm builds rustls without
/// aws-lc). Call first thing in `main`; later calls do nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
