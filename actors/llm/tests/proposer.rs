//! The `llm` proposer against the mock OpenAI-compatible server, over real
//! HTTP on 127.0.0.1: prompts, strict application with feedback, retries,
//! timeouts, budgets, cost accounting, the bandit and diagnosis.

use std::time::Duration;

use dgm_llm::mock::{MockReply, MockServer};
use dgm_llm::{ApiKey, BudgetLimits, LlmConfig, LlmProposer, ModelSpec};
use dgm_propose::{
    AttemptNote, CodeTree, Diagnosis, DiagnosisAnalysis, FailureCategory, FailureExample, Feedback,
    ProposalRequest, ProposeError, Proposer, StrategyNote,
};

const KEY: &str = "sk-test-SECRET-0123456789";

const PRIORITY: &str = "\"\"\"The heuristic.\"\"\"\n\n\ndef priority(item: float, bins: list[float]) -> list[float]:\n    # EVOLVE-BLOCK-START\n    scores = []\n    for b in bins:\n        score = 1.0\n        scores.append(score)\n    return scores\n    # EVOLVE-BLOCK-END\n";

const GOOD: &str = "Best Fit: prefer the bin the item fills most.\n\npriority.py\n<<<<<<< SEARCH\n        score = 1.0\n=======\n        score = -(b - item)\n>>>>>>> REPLACE\n";

const MISMATCH: &str = "priority.py\n<<<<<<< SEARCH\n        score = 2.0\n=======\n        score = -(b - item)\n>>>>>>> REPLACE\n";

fn request() -> ProposalRequest {
    let parent =
        CodeTree::from_texts([("priority.py", PRIORITY), ("pack.py", "import priority\n")]);
    let mut r = ProposalRequest::new(
        parent,
        vec!["priority.py".into()],
        vec!["pack.py".into()],
        7,
    );
    r.diagnosis = Diagnosis {
        summary: "2 of 10 tasks fail (timeout ×2)".into(),
        failure_categories: vec![FailureCategory {
            category: "timeout".into(),
            count: 2,
        }],
        rationales: vec!["killed at the 60s limit".into()],
        failures: vec![FailureExample {
            task: "train-or-3".into(),
            category: "timeout".into(),
            rationale: Some("killed at the 60s limit".into()),
            excerpt: "Traceback: RecursionError in priority".into(),
        }],
        analysis: Some(DiagnosisAnalysis {
            model: "m".into(),
            summary: "first fit wastes space".into(),
            chosen_proposal: "use best fit".into(),
            ..Default::default()
        }),
    };
    r.parent_score = Some(-0.0574);
    r.strategies = vec![StrategyNote {
        kind: "mutate".into(),
        diagnosis: "all pass".into(),
        summary: "changed constant 1.0 -> 0.5".into(),
        win_rate: 0.75,
        uses: 4,
    }];
    r.lineage = vec![AttemptNote {
        parent: "abc123".into(),
        summary: "llm:search_replace: tried worst fit".into(),
        outcome: "rejected".into(),
        score: Some(-0.09),
        reason: "fails the first stage".into(),
    }];
    r
}

fn config(server: &MockServer, models: Vec<ModelSpec>) -> LlmConfig {
    let mut c = LlmConfig::new(server.base_url(), ApiKey::new(KEY), models);
    c.client.backoff = Duration::from_millis(10);
    c.client.timeout = Duration::from_secs(5);
    c.diagnose = false;
    c
}

fn proposer(server: &MockServer) -> LlmProposer {
    LlmProposer::new(config(server, vec![ModelSpec::free("mock-model")])).unwrap()
}

#[tokio::test]
async fn the_prompt_holds_code_diagnosis_failures_strategies_and_lineage() {
    let server = MockServer::scripted(vec![MockReply::chat(GOOD)]).unwrap();
    let out = proposer(&server).propose_recorded(&request()).await;
    let proposal = out.value.unwrap();
    assert!(
        proposal
            .files
            .text("priority.py")
            .unwrap()
            .contains("score = -(b - item)")
    );
    assert_eq!(proposal.kind, "llm:search_replace");
    assert!(
        proposal.summary.starts_with("mock-model: Best Fit"),
        "{}",
        proposal.summary
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.model(), "mock-model");
    assert_eq!(
        req.authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
    let prompt = req.text();
    for needle in [
        "def priority(item: float",        // the parent's evolvable code
        "EVOLVE-BLOCK: lines 5–11",        // its region
        "2 of 10 tasks fail (timeout ×2)", // diagnosis summary
        "Failure categories: timeout ×2",  // categories
        "RecursionError in priority",      // stderr excerpt
        "task train-or-3 (timeout)",       // the failed trajectory
        "use best fit",                    // the model's analysis
        "win rate 75% over 4 uses",        // a strategy with its win rate
        "tried worst fit → rejected",      // lineage with outcome
        "Parent score: -0.057400",         // the parent's score
        "Evolvable files: priority.py",
        "Never change: pack.py",
    ] {
        assert!(
            prompt.contains(needle),
            "prompt lacks {needle:?}:\n{prompt}"
        );
    }
    assert!(
        !prompt.contains("import priority"),
        "protected files are not shown"
    );
    assert_eq!(out.calls.len(), 1);
    assert_eq!(out.calls[0].purpose, "propose");
    assert_eq!(out.calls[0].outcome, "ok");
    assert_eq!(
        (out.calls[0].prompt_tokens, out.calls[0].completion_tokens),
        (100, 50)
    );
}

#[tokio::test]
async fn a_mismatch_is_fed_back_and_the_retry_applies() {
    let server =
        MockServer::scripted(vec![MockReply::chat(MISMATCH), MockReply::chat(GOOD)]).unwrap();
    let out = proposer(&server).propose_recorded(&request()).await;
    assert!(out.value.is_ok(), "{:?}", out.value);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let messages = requests[1].body["messages"].as_array().unwrap().clone();
    assert_eq!(
        messages.len(),
        4,
        "system, prompt, the bad reply, the feedback"
    );
    assert_eq!(messages[2]["role"], "assistant");
    assert!(
        messages[2]["content"]
            .as_str()
            .unwrap()
            .contains("score = 2.0")
    );
    let feedback = requests[1].last_message();
    assert!(
        feedback.contains("does not match `priority.py` exactly"),
        "{feedback}"
    );
    assert!(
        feedback.contains("score = 1.0"),
        "the closest line is quoted: {feedback}"
    );
    assert!(
        feedback.contains("def priority("),
        "the code is shown again"
    );
    let purposes: Vec<&str> = out.calls.iter().map(|c| c.purpose.as_str()).collect();
    assert_eq!(purposes, ["propose", "retry"]);
    assert!(out.value.unwrap().summary.contains("after 1 fix round"));
}

#[tokio::test]
async fn a_reply_that_never_applies_is_a_failed_proposal_not_a_skip() {
    let server = MockServer::scripted(vec![MockReply::chat(MISMATCH)]).unwrap();
    let out = proposer(&server).propose_recorded(&request()).await;
    match out.value {
        Err(ProposeError::NoChangePossible(why)) => {
            assert!(why.contains("did not apply after 3 rounds"), "{why}");
            assert!(why.contains("does not match"), "{why}");
        }
        other => panic!("expected a failed proposal, got {other:?}"),
    }
    assert_eq!(server.requests().len(), 3, "1 try + 2 fix rounds");
    assert_eq!(out.calls.len(), 3);
}

#[tokio::test]
async fn whole_file_replies_rewrite_the_file() {
    let new = PRIORITY.replace("score = 1.0", "score = -(b - item)");
    let server = MockServer::scripted(vec![MockReply::chat(format!(
        "<<<<<<< FILE priority.py\n{new}>>>>>>> END\n"
    ))])
    .unwrap();
    let proposal = proposer(&server).propose(&request()).await.unwrap();
    assert_eq!(proposal.files.text("priority.py"), Some(new.as_str()));
    assert_eq!(proposal.kind, "llm:rewrite");
    // A bare fenced block is read as the one evolvable file.
    let server =
        MockServer::scripted(vec![MockReply::chat(format!("```python\n{new}```\n"))]).unwrap();
    let proposal = proposer(&server).propose(&request()).await.unwrap();
    assert_eq!(proposal.files.text("priority.py"), Some(new.as_str()));
}

#[tokio::test]
async fn edits_outside_the_evolve_block_or_the_evolvable_files_are_rejected() {
    let outside = "priority.py\n<<<<<<< SEARCH\n\"\"\"The heuristic.\"\"\"\n=======\n\"\"\"Hacked.\"\"\"\n>>>>>>> REPLACE\n";
    let server = MockServer::scripted(vec![MockReply::chat(outside)]).unwrap();
    let err = proposer(&server).propose(&request()).await.unwrap_err();
    assert!(err.to_string().contains("EVOLVE-BLOCK"), "{err}");
    let protected =
        "pack.py\n<<<<<<< SEARCH\nimport priority\n=======\nimport os\n>>>>>>> REPLACE\n";
    let server = MockServer::scripted(vec![MockReply::chat(protected)]).unwrap();
    let err = proposer(&server).propose(&request()).await.unwrap_err();
    assert!(err.to_string().contains("not an evolvable file"), "{err}");
    // The feedback told the model why.
    assert!(server.requests()[1].last_message().contains("`pack.py`"));
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_with_backoff() {
    let server = MockServer::scripted(vec![
        MockReply::error(429, "slow down"),
        MockReply::error(500, "oops"),
        MockReply::error(503, "busy"),
        MockReply::chat(GOOD),
    ])
    .unwrap();
    let out = proposer(&server).propose_recorded(&request()).await;
    assert!(out.value.is_ok(), "{:?}", out.value);
    let outcomes: Vec<&str> = out.calls.iter().map(|c| c.outcome.as_str()).collect();
    assert_eq!(outcomes, ["http_429", "http_500", "http_503", "ok"]);
    assert!(out.calls[0].error.as_deref().unwrap().contains("slow down"));
    // Only the successful call cost tokens.
    let tokens: u64 = out
        .calls
        .iter()
        .map(|c| c.prompt_tokens + c.completion_tokens)
        .sum();
    assert_eq!(tokens, 150);
}

#[tokio::test]
async fn retries_are_bounded_and_a_bad_key_is_not_retried() {
    let server = MockServer::scripted(vec![MockReply::error(500, "down")]).unwrap();
    let mut c = config(&server, vec![ModelSpec::free("m")]);
    c.client.max_retries = 2;
    let out = LlmProposer::new(c)
        .unwrap()
        .propose_recorded(&request())
        .await;
    assert!(
        matches!(out.value, Err(ProposeError::Backend(_))),
        "{:?}",
        out.value
    );
    assert_eq!(out.calls.len(), 3);
    assert_eq!(server.requests().len(), 3);

    // A server that echoes the key in its 401: not retried, and scrubbed.
    let server = MockServer::scripted(vec![MockReply::error(
        401,
        &format!("Incorrect API key provided: {KEY}"),
    )])
    .unwrap();
    let out = proposer(&server).propose_recorded(&request()).await;
    let err = out.value.unwrap_err().to_string();
    assert_eq!(out.calls.len(), 1);
    assert_eq!(out.calls[0].outcome, "http_401");
    let logged = format!("{:?} {err}", out.calls);
    assert!(!logged.contains(KEY), "the key leaked: {logged}");
    assert!(
        logged.contains("Incorrect API key provided: ***"),
        "{logged}"
    );
}

#[tokio::test]
async fn slow_replies_time_out_and_are_retried() {
    let server = MockServer::scripted(vec![
        MockReply::Delay(Duration::from_secs(3), Box::new(MockReply::chat(GOOD))),
        MockReply::chat(GOOD),
    ])
    .unwrap();
    let mut c = config(&server, vec![ModelSpec::free("m")]);
    c.client.timeout = Duration::from_millis(300);
    let began = std::time::Instant::now();
    let out = LlmProposer::new(c)
        .unwrap()
        .propose_recorded(&request())
        .await;
    assert!(out.value.is_ok(), "{:?}", out.value);
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "the slow call was cut at its timeout"
    );
    let outcomes: Vec<&str> = out.calls.iter().map(|c| c.outcome.as_str()).collect();
    assert_eq!(outcomes, ["timeout", "ok"]);
    assert!(out.calls[0].latency_ms >= 250, "{:?}", out.calls[0]);
}

#[tokio::test]
async fn malformed_replies_are_retried() {
    let server = MockServer::scripted(vec![
        MockReply::Garbage("<html>gateway</html>".into()),
        MockReply::Garbage("{\"choices\": []}".into()),
        MockReply::Json(serde_json::json!({
            "id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}}]
        })),
        MockReply::chat(GOOD),
    ])
    .unwrap();
    let out = proposer(&server).propose_recorded(&request()).await;
    assert!(out.value.is_ok(), "{:?}", out.value);
    let outcomes: Vec<&str> = out.calls.iter().map(|c| c.outcome.as_str()).collect();
    assert_eq!(outcomes, ["malformed", "malformed", "malformed", "ok"]);
}

#[tokio::test]
async fn a_spent_budget_stops_calls_and_costs_add_up() {
    let server = MockServer::scripted(vec![MockReply::chat_with_usage(GOOD, 1_000, 500)]).unwrap();
    // $2 / $8 per million tokens.
    let mut c = config(&server, vec![ModelSpec::priced("priced", 2.0, 8.0)]);
    c.budget = BudgetLimits {
        max_tokens: Some(3_000),
        max_cost_usd: None,
    };
    let p = LlmProposer::new(c).unwrap();
    let first = p.propose_recorded(&request()).await;
    let second = p.propose_recorded(&request()).await;
    assert!(first.value.is_ok() && second.value.is_ok());
    let cost = first.calls[0].cost_usd;
    assert!(
        (cost - (1_000.0 * 2.0 + 500.0 * 8.0) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    let third = p.propose_recorded(&request()).await;
    match &third.value {
        Err(ProposeError::Backend(why)) => assert!(why.contains("budget"), "{why}"),
        other => panic!("expected a budget stop, got {other:?}"),
    }
    assert_eq!(third.calls.len(), 1);
    assert_eq!(third.calls[0].outcome, "budget");
    assert_eq!(
        server.requests().len(),
        2,
        "no request once the budget is spent"
    );
    let all: Vec<_> = [first.calls, second.calls].concat();
    let (tokens, dollars) = dgm_llm::proposer::totals(&all);
    assert_eq!(p.budget().spent().0, tokens);
    assert!((p.budget().spent().1 - dollars).abs() < 1e-12);
    assert_eq!(tokens, 3_000);
    assert!((dollars - 2.0 * cost).abs() < 1e-12);
}

#[tokio::test]
async fn the_bandit_sends_most_proposals_to_the_model_that_pays() {
    // Both models give the same edit; "pricey" costs 20x more per token.
    let server = MockServer::start(|_req, _| MockReply::chat_with_usage(GOOD, 1_000, 200)).unwrap();
    let p = LlmProposer::new(config(
        &server,
        vec![
            ModelSpec::priced("pricey", 10.0, 30.0),
            ModelSpec::priced("cheap", 0.5, 1.5),
        ],
    ))
    .unwrap();
    for seed in 0..30u64 {
        let mut r = request();
        r.seed = seed;
        let out = p.propose_recorded(&r).await;
        let model = out.calls[0].model.clone();
        // Same improvement from either: the cheap one buys more per dollar.
        out.value.unwrap();
        p.observe(&Feedback {
            seed,
            kind: "llm".into(),
            improvement: Some(0.01),
        });
        let _ = model;
    }
    let stats = p.bandit().stats();
    let pulls = |name: &str| stats.iter().find(|s| s.model == name).unwrap().chosen;
    assert!(pulls("cheap") > 3 * pulls("pricey"), "{stats:?}");
    let by_model = server
        .requests()
        .iter()
        .filter(|r| r.model() == "cheap")
        .count() as u64;
    assert_eq!(by_model, pulls("cheap"));
}

#[tokio::test]
async fn the_model_writes_a_dgm_style_diagnosis() {
    let reply = r#"Here is my analysis:
{"summary": "First Fit leaves gaps", "possible_improvements": ["best fit", "worst fit"],
 "chosen_proposal": "best fit", "implementation_suggestion": "score = -(b - item)",
 "problem_statement": "Make priority prefer the fullest bin that fits."}"#;
    let server = MockServer::scripted(vec![MockReply::chat(reply)]).unwrap();
    let mut c = config(&server, vec![ModelSpec::free("m1"), ModelSpec::free("m2")]);
    c.diagnose = true;
    c.diagnosis_model = Some("m2".into());
    let out = LlmProposer::new(c).unwrap().analyse(&request()).await;
    let a = out.value.unwrap().unwrap();
    assert_eq!(a.model, "m2");
    assert_eq!(a.summary, "First Fit leaves gaps");
    assert_eq!(a.possible_improvements, ["best fit", "worst fit"]);
    assert_eq!(a.chosen_proposal, "best fit");
    assert_eq!(a.implementation_suggestion, "score = -(b - item)");
    assert!(a.problem_statement.starts_with("Make priority"));
    assert_eq!(out.calls[0].purpose, "diagnose");
    let prompt = server.requests()[0].text();
    assert!(prompt.contains("problem_statement") && prompt.contains("RecursionError"));
}

#[tokio::test]
async fn user_templates_replace_the_default_prompts() {
    let server = MockServer::scripted(vec![MockReply::chat(GOOD)]).unwrap();
    let mut c = config(&server, vec![ModelSpec::free("m")]);
    c.templates = dgm_llm::Templates::default()
        .with(
            "propose.md",
            "CUSTOM PROMPT\n{{code}}\nscore={{parent_score}}",
        )
        .unwrap();
    LlmProposer::new(c)
        .unwrap()
        .propose(&request())
        .await
        .unwrap();
    let last = server.requests()[0].last_message();
    assert!(last.starts_with("CUSTOM PROMPT\npriority.py"), "{last}");
    assert!(last.ends_with("score=-0.057400"), "{last}");
}
