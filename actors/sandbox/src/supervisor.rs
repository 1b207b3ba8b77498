//! The supervisor: the one way the rest of dgm runs untrusted code. It owns a
//! backend, runs at most `slots` executions at once (the rest wait in FIFO
//! order), can cancel queued or running executions, and tells a listener when
//! each execution starts and finishes (the composition root turns those calls
//! into `sandbox execution started / finished` events). Plain Rust; the actix
//! actor in `actor` is a thin shell around it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, oneshot};
use tracing::Instrument;

use crate::Backend;
use crate::docker::DockerSandbox;
use crate::job::{ExecResult, Executor, Job, SandboxError};
use crate::native::NativeSandbox;

/// Told about every execution. Implementations must be cheap and must not
/// block: they run on the executing task.
pub trait ExecutionListener: Send + Sync {
    fn started(&self, execution_id: &str, job: &Job);
    fn finished(&self, execution_id: &str, job: &Job, result: &Result<ExecResult, SandboxError>);
}

/// A listener that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopListener;

impl ExecutionListener for NoopListener {
    fn started(&self, _: &str, _: &Job) {}
    fn finished(&self, _: &str, _: &Job, _: &Result<ExecResult, SandboxError>) {}
}

/// The backend a supervisor drives.
#[derive(Debug, Clone)]
pub enum AnyBackend {
    Native(NativeSandbox),
    Docker(DockerSandbox),
}

impl AnyBackend {
    /// Connects to / detects the named backend; a one-line error if it cannot.
    pub async fn connect(backend: Backend) -> Result<Self, SandboxError> {
        match backend {
            Backend::Native => Ok(AnyBackend::Native(NativeSandbox::new()?)),
            Backend::Docker => Ok(AnyBackend::Docker(DockerSandbox::connect_default().await?)),
        }
    }

    pub fn kind(&self) -> Backend {
        match self {
            AnyBackend::Native(_) => Backend::Native,
            AnyBackend::Docker(_) => Backend::Docker,
        }
    }

    async fn run(&self, job: Job) -> Result<ExecResult, SandboxError> {
        match self {
            AnyBackend::Native(b) => b.execute(job).await,
            AnyBackend::Docker(b) => b.execute(job).await,
        }
    }
}

/// Supervisor settings.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Executions running at once.
    pub slots: usize,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            slots: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}

struct Inner {
    backend: AnyBackend,
    slots: usize,
    semaphore: Semaphore,
    listener: Arc<dyn ExecutionListener>,
    cancels: Mutex<HashMap<String, oneshot::Sender<()>>>,
}

/// A cheap-to-clone handle; implements [`Executor`].
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("backend", &self.inner.backend.kind())
            .field("slots", &self.inner.slots)
            .finish()
    }
}

/// Reports `finished(Cancelled)` if the execution future is dropped midway.
struct FinishGuard<'a> {
    inner: &'a Inner,
    id: &'a str,
    job: &'a Job,
    done: bool,
}

impl Drop for FinishGuard<'_> {
    fn drop(&mut self) {
        self.inner
            .cancels
            .lock()
            .map(|mut m| m.remove(self.id))
            .ok();
        if !self.done {
            self.inner
                .listener
                .finished(self.id, self.job, &Err(SandboxError::Cancelled));
        }
    }
}

impl Supervisor {
    pub fn new(
        backend: AnyBackend,
        config: SupervisorConfig,
        listener: Arc<dyn ExecutionListener>,
    ) -> Self {
        let slots = config.slots.max(1);
        Self {
            inner: Arc::new(Inner {
                backend,
                slots,
                semaphore: Semaphore::new(slots),
                listener,
                cancels: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A supervisor over the native backend with default settings.
    pub fn native(listener: Arc<dyn ExecutionListener>) -> Result<Self, SandboxError> {
        Ok(Self::new(
            AnyBackend::Native(NativeSandbox::new()?),
            SupervisorConfig::default(),
            listener,
        ))
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend.kind()
    }

    pub fn slots(&self) -> usize {
        self.inner.slots
    }

    /// Executions running right now.
    pub fn running(&self) -> usize {
        self.inner.slots - self.inner.semaphore.available_permits()
    }

    /// Cancels a queued or running execution: its payload is killed and it
    /// returns [`SandboxError::Cancelled`]. False if no such execution.
    pub fn cancel(&self, execution_id: &str) -> bool {
        let tx = self
            .inner
            .cancels
            .lock()
            .ok()
            .and_then(|mut m| m.remove(execution_id));
        tx.map(|tx| tx.send(()).is_ok()).unwrap_or(false)
    }

    /// Runs `job` under the id the caller chose (so that it can cancel it).
    /// Dropping the returned future also kills the payload.
    pub async fn execute_with_id(
        &self,
        execution_id: String,
        job: Job,
    ) -> Result<ExecResult, SandboxError> {
        let span = tracing::info_span!(
            "sandbox.execute_code",
            execution_id = %execution_id,
            backend = %self.inner.backend.kind(),
            command = ?job.command,
            memory_bytes = job.limits.memory_bytes,
            cpus = job.limits.cpus,
            pids = job.limits.pids,
            timeout_ms = job.limits.timeout.as_millis() as u64,
            network = job.limits.network,
            status = tracing::field::Empty,
        );
        let inner = &*self.inner;
        async move {
            let (tx, rx) = oneshot::channel();
            if let Ok(mut m) = inner.cancels.lock() {
                m.insert(execution_id.clone(), tx);
            }
            let mut guard = FinishGuard {
                inner,
                id: &execution_id,
                job: &job,
                done: false,
            };
            let work = async {
                let _permit =
                    inner.semaphore.acquire().await.map_err(|_| {
                        SandboxError::Unavailable("the supervisor is shut down".into())
                    })?;
                inner.listener.started(&execution_id, &job);
                inner.backend.run(job.clone()).await
            };
            let result = tokio::select! {
                r = work => r,
                Ok(()) = rx => Err(SandboxError::Cancelled),
            };
            match &result {
                Ok(r) => {
                    tracing::Span::current().record("status", tracing::field::debug(r.status));
                }
                Err(e) => {
                    tracing::Span::current().record("status", tracing::field::display(e));
                }
            }
            guard.done = true;
            inner.listener.finished(&execution_id, &job, &result);
            drop(guard);
            result
        }
        .instrument(span)
        .await
    }
}

impl Executor for Supervisor {
    fn execute(
        &self,
        job: Job,
    ) -> impl std::future::Future<Output = Result<ExecResult, SandboxError>> + Send {
        let this = self.clone();
        async move {
            let id = uuid::Uuid::new_v4().to_string();
            this.execute_with_id(id, job).await
        }
    }
}
