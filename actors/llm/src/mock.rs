//! A mock OpenAI-compatible server over real HTTP on 127.0.0.1.
//!
//! No language model is reachable from the machines dgm is built on, so every
//! test of the LLM proposers talks to this instead: a plain HTTP/1.1 server on
//! its own thread (usable from sync and async tests alike, and from a `dgm`
//! child process) that answers `POST …/chat/completions` from a script or a
//! closure, can answer with 429 / 500 / a delay / garbage, and keeps every
//! request it saw so tests can read the prompts.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct MockRequest {
    pub method: String,
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The JSON body (`Value::Null` when it was not JSON).
    pub body: Value,
}

impl MockRequest {
    /// The `model` field of a chat request.
    pub fn model(&self) -> &str {
        self.body["model"].as_str().unwrap_or_default()
    }

    /// Every message's text content, joined (what a test greps a prompt in).
    pub fn text(&self) -> String {
        self.body["messages"]
            .as_array()
            .map(|messages| {
                messages
                    .iter()
                    .map(|m| match &m["content"] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    /// The last message's text content.
    pub fn last_message(&self) -> String {
        self.body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .map(|m| match &m["content"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default()
    }
}

/// What the mock answers.
#[derive(Debug, Clone)]
pub enum MockReply {
    /// A chat completion with this content and usage.
    Chat {
        content: String,
        prompt_tokens: u64,
        completion_tokens: u64,
    },
    /// Any JSON body with status 200 (tool calls, odd servers).
    Json(Value),
    /// A status with a body (429, 500, ...).
    Status { code: u16, body: String },
    /// 200 with a body that is not a chat completion.
    Garbage(String),
    /// Waits, then answers.
    Delay(Duration, Box<MockReply>),
}

impl MockReply {
    /// A chat completion with 100 prompt and 50 completion tokens.
    pub fn chat(content: impl Into<String>) -> Self {
        Self::Chat {
            content: content.into(),
            prompt_tokens: 100,
            completion_tokens: 50,
        }
    }

    /// A chat completion with the given usage.
    pub fn chat_with_usage(
        content: impl Into<String>,
        prompt_tokens: u64,
        completion_tokens: u64,
    ) -> Self {
        Self::Chat {
            content: content.into(),
            prompt_tokens,
            completion_tokens,
        }
    }

    /// An OpenAI-style error with status `code`.
    pub fn error(code: u16, message: &str) -> Self {
        Self::Status {
            code,
            body: json!({"error": {"message": message, "type": "mock_error", "param": null, "code": null}})
                .to_string(),
        }
    }

    /// A chat completion whose message asks for tool calls: (id, function name, JSON arguments).
    pub fn tool_calls(calls: &[(&str, &str, Value)]) -> Self {
        let calls: Vec<Value> = calls
            .iter()
            .map(|(id, name, args)| {
                json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}})
            })
            .collect();
        Self::Json(json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": "mock",
            "choices": [{"index": 0, "finish_reason": "tool_calls",
                         "message": {"role": "assistant", "content": null, "tool_calls": calls}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        }))
    }
}

type Responder = dyn Fn(&MockRequest, usize) -> MockReply + Send + Sync;

struct Shared {
    requests: Mutex<Vec<MockRequest>>,
    responder: Box<Responder>,
}

/// The running mock; stops when dropped.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Answers request `n` (0-based, counted over all requests) with `responder(request, n)`.
    pub fn start(
        responder: impl Fn(&MockRequest, usize) -> MockReply + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            responder: Box::new(responder),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = shared.clone();
                    std::thread::spawn(move || {
                        let _ = serve(stream, &shared);
                    });
                }
            })
        };
        Ok(Self {
            addr,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// Answers with `replies` in order; the last one repeats.
    pub fn scripted(replies: Vec<MockReply>) -> std::io::Result<Self> {
        let replies = Mutex::new(VecDeque::from(replies));
        Self::start(move |_, _| {
            let mut replies = replies.lock().unwrap_or_else(|p| p.into_inner());
            match replies.len() {
                0 => MockReply::error(500, "the mock's script is empty"),
                1 => replies[0].clone(),
                _ => replies.pop_front().unwrap_or_else(|| MockReply::chat("")),
            }
        })
    }

    /// `http://127.0.0.1:PORT/v1`, the value for `OPENAI_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<MockRequest> {
        self.shared
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut length = 0usize;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "authorization" => authorization = Some(value.to_string()),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; length.min(64 * 1024 * 1024)];
    reader.read_exact(&mut body)?;
    let request = MockRequest {
        method,
        path,
        authorization,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let n = {
        let mut requests = shared.requests.lock().unwrap_or_else(|p| p.into_inner());
        requests.push(request.clone());
        requests.len() - 1
    };
    let mut reply = (shared.responder)(&request, n);
    while let MockReply::Delay(wait, next) = reply {
        std::thread::sleep(wait);
        reply = *next;
    }
    let (code, body) = match reply {
        MockReply::Chat {
            content,
            prompt_tokens,
            completion_tokens,
        } => (
            200,
            json!({
                "id": format!("chatcmpl-mock-{n}"), "object": "chat.completion", "created": 0,
                "model": request.model(),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}
            })
            .to_string(),
        ),
        MockReply::Json(value) => (200, value.to_string()),
        MockReply::Status { code, body } => (code, body),
        MockReply::Garbage(body) => (200, body),
        MockReply::Delay(..) => (500, String::new()),
    };
    let reason = match code {
        200 => "OK",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
