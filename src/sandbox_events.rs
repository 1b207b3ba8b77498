//! Records the sandbox supervisor's executions as events: a listener that
//! hands them to a writer task (listeners must not block), with full
//! outputs in the blob store. `flush` waits until everything is written.

use std::sync::{Arc, Mutex};

use dgm_events::*;
use dgm_sandbox::supervisor::ExecutionListener;
use dgm_sandbox::{ExecResult, Job, SandboxError};
use tokio::sync::mpsc;

enum Record {
    Started(String, Job),
    Finished(String, Box<Result<ExecResult, SandboxError>>),
}

pub struct EventListener {
    tx: Mutex<Option<mpsc::UnboundedSender<Record>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl EventListener {
    pub fn new(store: Arc<Store>, meta: Metadata) -> Arc<Self> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Record>();
        let writer = tokio::spawn(async move {
            while let Some(record) = rx.recv().await {
                if let Err(e) = write(&store, &meta, record).await {
                    tracing::warn!("cannot record a sandbox execution: {e}");
                }
            }
        });
        Arc::new(Self {
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Waits for every execution seen so far to be written.
    pub async fn flush(&self) {
        drop(self.tx.lock().ok().and_then(|mut t| t.take()));
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(w) = writer {
            let _ = w.await;
        }
    }

    fn send(&self, record: Record) {
        if let Ok(guard) = self.tx.lock()
            && let Some(tx) = guard.as_ref()
        {
            let _ = tx.send(record);
        }
    }
}

async fn write(store: &Store, meta: &Metadata, record: Record) -> Result<(), StoreError> {
    match record {
        Record::Started(id, job) => {
            let limits = serde_json::to_value(&job.limits).unwrap_or_default();
            let event = SandboxExecutionStarted {
                execution_id: id.clone(),
                command: job.command,
                limits,
            };
            store
                .append(
                    StreamType::SandboxExecution,
                    &id,
                    vec![event.into()],
                    &meta.now(),
                )
                .await
        }
        Record::Finished(id, result) => {
            let event = match *result {
                Ok(r) => SandboxExecutionFinished {
                    execution_id: id.clone(),
                    status: serde_json::to_value(r.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    exit_code: r.exit_code,
                    wall_ms: r.wall.as_millis() as u64,
                    cpu_ms: r.cpu.as_millis() as u64,
                    peak_memory_bytes: r.peak_memory_bytes,
                    stdout_blob: if r.stdout.is_empty() {
                        None
                    } else {
                        Some(store.put_blob(&r.stdout).await?)
                    },
                    stderr_blob: if r.stderr.is_empty() {
                        None
                    } else {
                        Some(store.put_blob(&r.stderr).await?)
                    },
                    error: None,
                },
                Err(e) => SandboxExecutionFinished {
                    execution_id: id.clone(),
                    status: "setup_error".into(),
                    exit_code: None,
                    wall_ms: 0,
                    cpu_ms: 0,
                    peak_memory_bytes: None,
                    stdout_blob: None,
                    stderr_blob: None,
                    error: Some(e.to_string()),
                },
            };
            store
                .append(
                    StreamType::SandboxExecution,
                    &id,
                    vec![event.into()],
                    &meta.now(),
                )
                .await
        }
    }
}

impl ExecutionListener for EventListener {
    fn started(&self, execution_id: &str, job: &Job) {
        self.send(Record::Started(execution_id.to_string(), job.clone()));
    }

    fn finished(&self, execution_id: &str, _job: &Job, result: &Result<ExecResult, SandboxError>) {
        let copy = match result {
            Ok(r) => Ok(r.clone()),
            Err(e) => Err(SandboxError::Setup(e.to_string())),
        };
        self.send(Record::Finished(execution_id.to_string(), Box::new(copy)));
    }
}
