//! The `llm` proposer: a model rewrites the parent through SEARCH/REPLACE edits.
//!
//! For each attempt the bandit picks a model; the prompt holds the parent's
//! evolvable code, the diagnosis (with failed runs' output and the model's
//! own analysis), ReasoningBank strategies with win rates and the lineage's
//! recent attempts. The reply is applied strictly ([`crate::edits`]); when it
//! does not apply, the error and the current code go back to the model for at
//! most `fix_rounds` more rounds, and then the proposal fails — it is never
//! quietly dropped or fuzzily applied. The same client, with the
//! `diagnose*.md` templates, writes the DGM-style diagnosis.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dgm_propose::{
    CallRecord, DiagnosisAnalysis, Feedback, PastProposal, Proposal, ProposalRequest, ProposeError,
    Proposer, Recorded,
};
use serde_json::Value;

use crate::bandit::Bandit;
use crate::budget::{Budget, BudgetLimits};
use crate::client::{ApiKey, ChatClient, ClientConfig, ClientError, Message, shorten};
use crate::edits::{Edit, apply_edits, parse_reply};
use crate::models::ModelSpec;
use crate::prompt::{Templates, render_code, values};

/// Everything the `llm` proposer is configured with (the key only inside `client`).
#[derive(Debug, Clone)]
pub struct LlmConfig {
    pub client: ClientConfig,
    /// At least one; the bandit chooses among them per attempt.
    pub models: Vec<ModelSpec>,
    /// The model that writes diagnoses (default: the first model).
    pub diagnosis_model: Option<String>,
    /// Whether to ask a model for a DGM-style diagnosis before each proposal.
    pub diagnose: bool,
    /// Rounds of "this did not apply, try again" after the first reply.
    pub fix_rounds: u32,
    pub budget: BudgetLimits,
    pub templates: Templates,
}

impl LlmConfig {
    pub fn new(base_url: impl Into<String>, api_key: ApiKey, models: Vec<ModelSpec>) -> Self {
        Self {
            client: ClientConfig::new(base_url, api_key),
            models,
            diagnosis_model: None,
            diagnose: true,
            fix_rounds: 2,
            budget: BudgetLimits::default(),
            templates: Templates::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LlmConfigError {
    #[error("no model configured: give --model NAME (or set DGM_LLM_MODELS)")]
    NoModels,
    #[error("the diagnosis model `{0}` is not among the configured models")]
    UnknownDiagnosisModel(String),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The proposer.
#[derive(Debug)]
pub struct LlmProposer {
    client: ChatClient,
    models: Vec<ModelSpec>,
    diagnosis_model: usize,
    diagnose: bool,
    fix_rounds: u32,
    templates: Templates,
    bandit: Bandit,
    budget: Arc<Budget>,
    /// Request seed → the arm that proposed it, until its feedback arrives.
    pending: Mutex<HashMap<u64, usize>>,
}

impl LlmProposer {
    pub fn new(config: LlmConfig) -> Result<Self, LlmConfigError> {
        if config.models.is_empty() {
            return Err(LlmConfigError::NoModels);
        }
        let diagnosis_model = match &config.diagnosis_model {
            None => 0,
            Some(name) => config
                .models
                .iter()
                .position(|m| &m.name == name)
                .ok_or_else(|| LlmConfigError::UnknownDiagnosisModel(name.clone()))?,
        };
        Ok(Self {
            client: ChatClient::new(config.client)?,
            bandit: Bandit::new(config.models.iter().map(|m| m.name.clone())),
            models: config.models,
            diagnosis_model,
            diagnose: config.diagnose,
            fix_rounds: config.fix_rounds,
            templates: config.templates,
            budget: Arc::new(Budget::new(config.budget)),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// Starts the budget from what the run already spent (resume).
    pub fn with_spent(mut self, tokens: u64, cost: f64) -> Self {
        let limits = self.budget.limits();
        self.budget = Arc::new(Budget::new(limits).with_spent(tokens, cost));
        self
    }

    pub fn bandit(&self) -> &Bandit {
        &self.bandit
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    fn charge(&self, arm: usize, calls: &[CallRecord]) {
        for c in calls {
            self.bandit
                .charge(arm, c.cost_usd, c.prompt_tokens + c.completion_tokens);
        }
    }

    async fn propose_with(
        &self,
        request: &ProposalRequest,
        calls: &mut Vec<CallRecord>,
    ) -> Result<Proposal, ProposeError> {
        let arm = self.bandit.choose();
        let model = &self.models[arm];
        if let Ok(mut p) = self.pending.lock() {
            p.insert(request.seed, arm);
        }
        let policy = request.policy();
        let evolvable: Vec<&str> = request
            .parent
            .paths()
            .filter(|p| policy.is_evolvable(p))
            .collect();
        let default_path = (evolvable.len() == 1).then(|| evolvable[0]);
        let mut v = values(request);
        let mut messages = vec![
            Message::system(self.templates.render("system.md", &v)),
            Message::user(self.templates.render("propose.md", &v)),
        ];
        let mut last_error = String::new();
        for round in 0..=self.fix_rounds {
            let purpose = if round == 0 { "propose" } else { "retry" };
            let (reply, records) = self
                .client
                .chat(model, purpose, &messages, &self.budget)
                .await;
            self.charge(arm, &records);
            calls.extend(records);
            let text = reply.map_err(|e| ProposeError::Backend(e.to_string()))?;
            let applied = parse_reply(&text, default_path)
                .and_then(|edits| {
                    apply_edits(&request.parent, &edits, &policy).map(|child| (edits, child))
                })
                .map_err(|e| e.to_string())
                .and_then(|(edits, child)| {
                    dgm_propose::patch::check_child(&request.parent, &child, &policy)
                        .map(|()| (edits, child))
                        .map_err(|e| e.to_string())
                });
            match applied {
                Ok((edits, child)) => {
                    return Ok(Proposal {
                        files: child,
                        kind: if edits.iter().all(|e| matches!(e, Edit::WholeFile { .. })) {
                            "llm:rewrite".into()
                        } else {
                            "llm:search_replace".into()
                        },
                        summary: summarize(&model.name, &text, &edits, round),
                    });
                }
                Err(error) => {
                    tracing::info!(model = %model.name, round, "LLM edit did not apply: {error}");
                    last_error = error.clone();
                    v.insert("error", error);
                    v.insert("code", render_code(&request.parent, request));
                    messages.push(Message::assistant(text));
                    messages.push(Message::user(self.templates.render("fix.md", &v)));
                }
            }
        }
        Err(ProposeError::NoChangePossible(format!(
            "{}: the reply did not apply after {} rounds: {last_error}",
            model.name,
            self.fix_rounds + 1
        )))
    }

    async fn analyse_with(
        &self,
        request: &ProposalRequest,
        calls: &mut Vec<CallRecord>,
    ) -> Result<Option<DiagnosisAnalysis>, ProposeError> {
        let model = &self.models[self.diagnosis_model];
        let v = values(request);
        let messages = vec![
            Message::system(self.templates.render("diagnose_system.md", &v)),
            Message::user(self.templates.render("diagnose.md", &v)),
        ];
        let (reply, records) = self
            .client
            .chat(model, "diagnose", &messages, &self.budget)
            .await;
        calls.extend(records);
        let text = reply.map_err(|e| ProposeError::Backend(e.to_string()))?;
        Ok(Some(parse_analysis(&model.name, &text)))
    }
}

/// One line for humans: the model, the reply's first sentence, the files edited.
fn summarize(model: &str, reply: &str, edits: &[Edit], round: u32) -> String {
    let first = reply
        .lines()
        .map(str::trim)
        .find(|l| {
            l.contains(' ')
                && !["<<<<<<<", ">>>>>>>", "=======", "```"]
                    .iter()
                    .any(|m| l.starts_with(m))
        })
        .unwrap_or("");
    let mut files: Vec<&str> = edits.iter().map(Edit::path).collect();
    files.dedup();
    let fixed = if round > 0 {
        format!(", after {round} fix round(s)")
    } else {
        String::new()
    };
    format!(
        "{model}: {} ({} edit(s) to {}{fixed})",
        shorten(first, 120),
        edits.len(),
        files.join(", ")
    )
}

/// A diagnosis reply: the JSON object asked for, or — from a model that
/// ignored the format — its text as summary and problem statement.
pub fn parse_analysis(model: &str, text: &str) -> DiagnosisAnalysis {
    let json = text
        .find('{')
        .zip(text.rfind('}'))
        .filter(|(a, b)| a < b)
        .and_then(|(a, b)| serde_json::from_str::<Value>(&text[a..=b]).ok());
    let s = |v: &Value, k: &str| match &v[k] {
        Value::String(s) => s.trim().to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match json {
        Some(v) if v.is_object() => DiagnosisAnalysis {
            model: model.into(),
            summary: s(&v, "summary"),
            possible_improvements: match &v["possible_improvements"] {
                Value::Array(a) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| x.to_string())
                    })
                    .collect(),
                Value::String(x) => vec![x.clone()],
                _ => Vec::new(),
            },
            chosen_proposal: s(&v, "chosen_proposal"),
            implementation_suggestion: s(&v, "implementation_suggestion"),
            problem_statement: s(&v, "problem_statement"),
        },
        _ => DiagnosisAnalysis {
            model: model.into(),
            summary: shorten(text.trim(), 2000),
            problem_statement: shorten(text.trim(), 2000),
            ..Default::default()
        },
    }
}

#[async_trait]
impl Proposer for LlmProposer {
    fn name(&self) -> &str {
        "llm"
    }

    async fn propose(&self, request: &ProposalRequest) -> Result<Proposal, ProposeError> {
        self.propose_recorded(request).await.value
    }

    async fn propose_recorded(
        &self,
        request: &ProposalRequest,
    ) -> Recorded<Result<Proposal, ProposeError>> {
        let mut calls = Vec::new();
        let value = self.propose_with(request, &mut calls).await;
        Recorded { value, calls }
    }

    async fn analyse(
        &self,
        request: &ProposalRequest,
    ) -> Recorded<Result<Option<DiagnosisAnalysis>, ProposeError>> {
        if !self.diagnose {
            return Recorded::free(Ok(None));
        }
        let mut calls = Vec::new();
        let value = self.analyse_with(request, &mut calls).await;
        Recorded { value, calls }
    }

    fn observe(&self, feedback: &Feedback) {
        let arm = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&feedback.seed));
        if let Some(arm) = arm {
            self.bandit.reward(arm, feedback.improvement);
        }
    }

    /// Replays the run's earlier proposals into the bandit: each chose the
    /// model of its first proposal call, was charged for its proposal
    /// calls, and was rewarded once decided; one still undecided waits for
    /// its feedback as if it had just been proposed.
    fn restore(&self, past: &[PastProposal]) {
        for p in past {
            let proposing = |c: &&CallRecord| c.purpose == "propose" || c.purpose == "retry";
            let Some(arm) = p
                .calls
                .iter()
                .find(proposing)
                .and_then(|c| self.models.iter().position(|m| m.name == c.model))
            else {
                continue;
            };
            self.bandit.chosen_before(arm);
            let calls: Vec<CallRecord> = p.calls.iter().filter(proposing).cloned().collect();
            self.charge(arm, &calls);
            match (&p.feedback, p.finished) {
                (Some(feedback), _) => self.bandit.reward(arm, feedback.improvement),
                (None, false) => {
                    if let Ok(mut pending) = self.pending.lock() {
                        pending.insert(p.seed, arm);
                    }
                }
                (None, true) => {}
            }
        }
    }
}

/// Totals over call records: (tokens, dollars).
pub fn totals(calls: &[CallRecord]) -> (u64, f64) {
    calls.iter().fold((0, 0.0), |(t, c), r| {
        (t + r.prompt_tokens + r.completion_tokens, c + r.cost_usd)
    })
}

/// Placeholder values for a request, for tools that show a prompt.
pub fn prompt_values(request: &ProposalRequest) -> BTreeMap<&'static str, String> {
    values(request)
}
