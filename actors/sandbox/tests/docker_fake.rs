//! The docker backend against an in-process fake of the Docker Engine API on
//! 127.0.0.1 (there is no Docker engine on the dev machines). The fake records
//! every request and asserts what dgm sends: the HostConfig limits, the order
//! create → start → wait → logs → delete, logs read before the delete.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use dgm_sandbox::docker::{DockerConfig, DockerSandbox};
use dgm_sandbox::{ExecStatus, Executor, Job, Limits, SandboxError};

#[derive(Default)]
struct Fake {
    /// (method, path without the version prefix)
    calls: Mutex<Vec<(String, String)>>,
    create_body: Mutex<Option<Value>>,
    exit_code: i64,
}

fn strip_version(path: &str) -> String {
    let p = path.strip_prefix('/').unwrap_or(path);
    match p.split_once('/') {
        Some((v, rest)) if v.starts_with('v') && v[1..].contains('.') => format!("/{rest}"),
        _ => format!("/{p}"),
    }
}

fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut f = vec![stream, 0, 0, 0];
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

async fn handle(
    fake: Arc<Fake>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = strip_version(req.uri().path());
    let query = req.uri().query().unwrap_or("").to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    fake.calls
        .lock()
        .expect("lock")
        .push((method.clone(), path.clone()));
    let json_resp = |status: u16, v: Value| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("api-version", "1.47")
            .body(Full::new(Bytes::from(v.to_string())))
            .expect("response")
    };
    let resp = match (method.as_str(), path.as_str()) {
        ("GET" | "HEAD", "/_ping") => Response::builder()
            .status(200)
            .header("api-version", "1.47")
            .body(Full::new(Bytes::from_static(b"OK")))
            .expect("response"),
        ("GET", "/version") => json_resp(
            200,
            json!({"Version": "27.0.0", "ApiVersion": "1.47", "MinAPIVersion": "1.24", "Os": "linux", "Arch": "amd64"}),
        ),
        ("POST", "/containers/create") => {
            assert!(query.contains("name=dgm-"), "container name: {query}");
            let v: Value = serde_json::from_slice(&body).expect("create body is JSON");
            *fake.create_body.lock().expect("lock") = Some(v);
            json_resp(201, json!({"Id": "c0ffee", "Warnings": []}))
        }
        ("POST", "/containers/c0ffee/start") => Response::builder()
            .status(204)
            .body(Full::new(Bytes::new()))
            .expect("response"),
        ("POST", "/containers/c0ffee/wait") => {
            json_resp(200, json!({"StatusCode": fake.exit_code, "Error": null}))
        }
        ("GET", "/containers/c0ffee/json") => json_resp(
            200,
            json!({"Id": "c0ffee", "State": {"Status": "exited", "OOMKilled": false, "ExitCode": fake.exit_code}}),
        ),
        ("GET", "/containers/c0ffee/logs") => {
            assert!(
                query.contains("stdout=true") && query.contains("stderr=true"),
                "{query}"
            );
            let mut b = frame(1, b"hello from the container\n");
            b.extend(frame(2, b"a warning\n"));
            Response::builder()
                .status(200)
                .header("content-type", "application/vnd.docker.multiplexed-stream")
                .body(Full::new(Bytes::from(b)))
                .expect("response")
        }
        ("DELETE", "/containers/c0ffee") => {
            assert!(query.contains("force=true"), "{query}");
            Response::builder()
                .status(204)
                .body(Full::new(Bytes::new()))
                .expect("response")
        }
        _ => json_resp(
            404,
            json!({"message": format!("fake engine: no route {method} {path}")}),
        ),
    };
    Ok(resp)
}

async fn start_fake(exit_code: i64) -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake {
        exit_code,
        ..Fake::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let f = fake.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let f = f.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(f.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (fake, format!("tcp://{addr}"))
}

fn job() -> Job {
    let mut job = Job::new(["python3", "-c", "print('hi')"]);
    job.limits = Limits {
        memory_bytes: 256 * 1024 * 1024,
        cpus: 0.5,
        pids: 32,
        timeout: Duration::from_secs(10),
        output_bytes: 1024,
        scratch_bytes: 16 * 1024 * 1024,
        network: false,
    };
    job
}

#[tokio::test]
async fn sends_a_locked_down_host_config_and_reads_logs_before_removing() {
    let (fake, addr) = start_fake(0).await;
    let sb = DockerSandbox::connect_http(&addr, DockerConfig::default())
        .await
        .expect("connect");
    let r = sb.execute(job()).await.expect("run");
    assert_eq!(r.status, ExecStatus::Ok);
    assert_eq!(r.exit_code, Some(0));
    assert_eq!(r.stdout, b"hello from the container\n");
    assert_eq!(r.stderr, b"a warning\n");

    let body = fake
        .create_body
        .lock()
        .expect("lock")
        .clone()
        .expect("create was called");
    let hc = &body["HostConfig"];
    assert_eq!(hc["Memory"], json!(256 * 1024 * 1024));
    assert_eq!(
        hc["MemorySwap"], hc["Memory"],
        "memory = memory_swap (no swap)"
    );
    assert_eq!(hc["CpuPeriod"], json!(100_000));
    assert_eq!(hc["CpuQuota"], json!(50_000));
    assert_eq!(hc["PidsLimit"], json!(32));
    assert_eq!(hc["ReadonlyRootfs"], json!(true));
    assert!(
        hc["Tmpfs"]["/tmp"]
            .as_str()
            .expect("tmpfs")
            .contains("size=16777216")
    );
    assert_eq!(hc["NetworkMode"], json!("none"));
    assert_eq!(hc["CapDrop"], json!(["ALL"]));
    assert_eq!(hc["SecurityOpt"], json!(["no-new-privileges"]));
    assert_eq!(hc["AutoRemove"], json!(false));
    assert_ne!(hc["Privileged"], json!(true));
    assert_eq!(body["NetworkDisabled"], json!(true));
    assert_ne!(body["User"], json!("0"));
    assert_ne!(body["User"], json!("root"));

    let calls: Vec<String> = fake
        .calls
        .lock()
        .expect("lock")
        .iter()
        .map(|(m, p)| format!("{m} {p}"))
        .filter(|c| c.contains("/containers/"))
        .collect();
    let pos = |s: &str| {
        calls
            .iter()
            .position(|c| c == s)
            .unwrap_or_else(|| panic!("{s} missing: {calls:?}"))
    };
    assert!(pos("POST /containers/create") < pos("POST /containers/c0ffee/start"));
    assert!(pos("POST /containers/c0ffee/start") < pos("POST /containers/c0ffee/wait"));
    assert!(pos("POST /containers/c0ffee/wait") < pos("GET /containers/c0ffee/logs"));
    assert!(
        pos("GET /containers/c0ffee/logs") < pos("DELETE /containers/c0ffee"),
        "logs before delete"
    );
    let all = fake.calls.lock().expect("lock").clone();
    assert!(
        all.iter().any(|(_, p)| p == "/version"),
        "negotiates the API version"
    );
}

#[tokio::test]
async fn a_non_zero_exit_is_a_result_not_an_error() {
    let (_fake, addr) = start_fake(3).await;
    let sb = DockerSandbox::connect_http(&addr, DockerConfig::default())
        .await
        .expect("connect");
    let r = sb
        .execute(job())
        .await
        .expect("bollard's wait error must map to a result");
    assert_eq!(r.status, ExecStatus::NonZeroExit);
    assert_eq!(r.exit_code, Some(3));
}

#[tokio::test]
async fn no_engine_is_a_one_line_error() {
    // A port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("tcp://{}", l.local_addr().expect("addr"));
    drop(l);
    let e = DockerSandbox::connect_http(&addr, DockerConfig::default())
        .await
        .expect_err("no engine");
    assert!(matches!(e, SandboxError::Unavailable(_)));
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.contains("no Docker engine"), "{msg}");
}
