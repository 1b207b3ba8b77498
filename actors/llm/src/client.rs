//! One chat call to an OpenAI-compatible server, done carefully.
//!
//! Users of other evolvers complain about runs that hang on a dead server,
//! die on the first 429, and never say what they cost. Every call here has a
//! timeout, 429 and 5xx (and garbled replies) are retried with exponential
//! backoff, a spent budget stops calls before they are made, and every HTTP
//! try becomes a [`CallRecord`] (model, tokens, latency, cost, outcome) for the
//! event log. The API key lives only in [`ApiKey`], which never prints it, and
//! is scrubbed from any error text a server echoes back.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequestArgs,
};
use dgm_propose::CallRecord;

use crate::budget::Budget;
use crate::models::ModelSpec;

/// An API key. Its `Debug` and `Display` print `***`; it is never serialized.
#[derive(Clone, Default)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every occurrence of the key replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.len() < 4 {
            return text.to_string();
        }
        text.replace(&self.0, "***")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where and how to call.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// e.g. `https://api.openai.com/v1`, `http://localhost:11434/v1`.
    pub base_url: String,
    pub api_key: ApiKey,
    /// Limit on one HTTP try, connection to last byte.
    pub timeout: Duration,
    /// Tries after the first one, for 429, 5xx, timeouts and garbled replies.
    pub max_retries: u32,
    /// First backoff; doubles each retry (capped at 30 s).
    pub backoff: Duration,
    /// Cap on generated tokens per call.
    pub max_completion_tokens: u32,
    pub temperature: f32,
}

impl ClientConfig {
    pub const DEFAULT_BASE_URL: &'static str = "https://api.openai.com/v1";

    pub fn new(base_url: impl Into<String>, api_key: ApiKey) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            api_key,
            timeout: Duration::from_secs(120),
            max_retries: 4,
            backoff: Duration::from_millis(500),
            max_completion_tokens: 4096,
            temperature: 0.7,
        }
    }
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// Why a call gave no text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("the LLM budget is spent: {0}")]
    Budget(String),
    #[error("{model}: gave up after {tries} tries: {last}")]
    Exhausted {
        model: String,
        tries: u32,
        last: String,
    },
    #[error("{model}: {message}")]
    Rejected { model: String, message: String },
    #[error("cannot build the request: {0}")]
    Request(String),
}

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// A chat client for one server, shared by all models on it.
#[derive(Clone)]
pub struct ChatClient {
    client: async_openai::Client<OpenAIConfig>,
    config: Arc<ClientConfig>,
}

impl fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// How one try ended, before it is recorded.
enum TryOutcome {
    Text(String, u64, u64),
    Retry(&'static str, String),
    Stop(&'static str, String),
}

impl ChatClient {
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(30)))
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let openai = OpenAIConfig::new()
            .with_api_base(config.base_url.clone())
            .with_api_key(config.api_key.expose());
        // Without this the crate's default stack retries 429/5xx on its own,
        // unseen; dgm retries itself so that every try is recorded.
        let plain = async_openai::middleware::ReqwestService::new(http.clone());
        Ok(Self {
            client: async_openai::Client::build(http, openai).with_http_service(plain),
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Sends `messages` to `model`, retrying what is worth retrying. Returns
    /// the reply's text (or why there is none) and one record per HTTP try.
    pub async fn chat(
        &self,
        model: &ModelSpec,
        purpose: &str,
        messages: &[Message],
        budget: &Budget,
    ) -> (Result<String, CallError>, Vec<CallRecord>) {
        let mut records = Vec::new();
        let request = match self.request(model, messages) {
            Ok(r) => r,
            Err(e) => return (Err(e), records),
        };
        let prompt_chars: usize = messages.iter().map(|m| m.content.len()).sum();
        let tries = self.config.max_retries + 1;
        let mut last = String::new();
        for attempt in 0..tries {
            if let Some(why) = budget.exhausted() {
                records.push(CallRecord {
                    purpose: purpose.into(),
                    model: model.name.clone(),
                    outcome: "budget".into(),
                    error: Some(why.clone()),
                    ..Default::default()
                });
                return (Err(CallError::Budget(why)), records);
            }
            if attempt > 0 {
                let wait = self
                    .config
                    .backoff
                    .saturating_mul(1 << (attempt - 1).min(16))
                    .min(Duration::from_secs(30));
                tokio::time::sleep(wait).await;
            }
            let began = Instant::now();
            let outcome = match tokio::time::timeout(
                self.config.timeout,
                self.client.chat().create(request.clone()),
            )
            .await
            {
                Err(_) => TryOutcome::Retry(
                    "timeout",
                    format!("no reply within {:?}", self.config.timeout),
                ),
                Ok(Ok(response)) => {
                    let text = response
                        .choices
                        .first()
                        .and_then(|c| c.message.content.clone());
                    let (prompt, completion) = match &response.usage {
                        Some(u) => (u.prompt_tokens as u64, u.completion_tokens as u64),
                        // No usage reported: estimate (about 4 characters a token).
                        None => (
                            (prompt_chars / 4) as u64,
                            text.as_ref().map_or(0, |t| t.len() / 4) as u64,
                        ),
                    };
                    match text {
                        Some(t) if !t.trim().is_empty() => TryOutcome::Text(t, prompt, completion),
                        _ => TryOutcome::Retry("malformed", "the reply has no text".into()),
                    }
                }
                Ok(Err(error)) => classify(&error),
            };
            let latency_ms = began.elapsed().as_millis() as u64;
            match outcome {
                TryOutcome::Text(text, prompt, completion) => {
                    let cost = model.cost(prompt, completion);
                    budget.charge(prompt + completion, cost);
                    records.push(CallRecord {
                        purpose: purpose.into(),
                        model: model.name.clone(),
                        prompt_tokens: prompt,
                        completion_tokens: completion,
                        latency_ms,
                        cost_usd: cost,
                        outcome: "ok".into(),
                        error: None,
                    });
                    return (Ok(text), records);
                }
                TryOutcome::Retry(kind, message) | TryOutcome::Stop(kind, message) => {
                    let message = self.config.api_key.scrub(&shorten(&message, 400));
                    tracing::warn!(model = %model.name, outcome = kind, "LLM call failed: {message}");
                    records.push(CallRecord {
                        purpose: purpose.into(),
                        model: model.name.clone(),
                        latency_ms,
                        outcome: kind.into(),
                        error: Some(message.clone()),
                        ..Default::default()
                    });
                    last = format!("{kind}: {message}");
                    if let TryOutcome::Stop(..) = outcome_kind(kind) {
                        return (
                            Err(CallError::Rejected {
                                model: model.name.clone(),
                                message: last,
                            }),
                            records,
                        );
                    }
                }
            }
        }
        (
            Err(CallError::Exhausted {
                model: model.name.clone(),
                tries,
                last,
            }),
            records,
        )
    }

    fn request(
        &self,
        model: &ModelSpec,
        messages: &[Message],
    ) -> Result<async_openai::types::chat::CreateChatCompletionRequest, CallError> {
        let messages: Vec<ChatCompletionRequestMessage> = messages
            .iter()
            .map(|m| match m.role {
                Role::System => ChatCompletionRequestSystemMessage::from(m.content.as_str()).into(),
                Role::User => ChatCompletionRequestUserMessage::from(m.content.as_str()).into(),
                Role::Assistant => {
                    ChatCompletionRequestAssistantMessage::from(m.content.as_str()).into()
                }
            })
            .collect();
        CreateChatCompletionRequestArgs::default()
            .model(model.name.clone())
            .messages(messages)
            .max_completion_tokens(self.config.max_completion_tokens)
            .temperature(self.config.temperature)
            .build()
            .map_err(|e| CallError::Request(e.to_string()))
    }
}

/// `Stop` for outcomes that retrying cannot fix (a bad key, an unknown model).
fn outcome_kind(kind: &'static str) -> TryOutcome {
    if kind.starts_with("http_4") && kind != "http_429" && kind != "http_408" {
        TryOutcome::Stop(kind, String::new())
    } else {
        TryOutcome::Retry(kind, String::new())
    }
}

fn classify(error: &OpenAIError) -> TryOutcome {
    match error {
        OpenAIError::ApiError(response) => {
            let code = response.status_code.as_u16();
            let kind: &'static str = match code {
                429 => "http_429",
                408 => "http_408",
                500 => "http_500",
                502 => "http_502",
                503 => "http_503",
                504 => "http_504",
                c if c >= 500 => "http_5xx",
                401 => "http_401",
                403 => "http_403",
                404 => "http_404",
                _ => "http_4xx",
            };
            TryOutcome::Retry(kind, response.to_string())
        }
        OpenAIError::Reqwest(e) if e.is_timeout() => TryOutcome::Retry("timeout", e.to_string()),
        OpenAIError::Reqwest(e) => TryOutcome::Retry("transport", e.to_string()),
        OpenAIError::JSONDeserialize(e, _) => TryOutcome::Retry(
            "malformed",
            format!("the reply is not a chat completion: {e}"),
        ),
        other => TryOutcome::Retry("malformed", other.to_string()),
    }
}

/// At most `max` characters.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}
