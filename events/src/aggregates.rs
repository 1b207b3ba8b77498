//! The aggregates: consistency boundaries that validate commands against
//! the events already recorded for one stream, with optimistic concurrency.
//!
//! `Agent` guards an agent's versions and its active version. The other
//! streams (runs, evaluations, strategies, sandbox executions) are
//! append-only logs with a start and an end, checked by [`Stream`].

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use crate::event::*;

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("agent `{0}` is already registered")]
    AlreadyRegistered(String),
    #[error("agent `{0}` is not registered (run `dgm agent add DIR`)")]
    UnknownAgent(String),
    #[error("agent `{agent}` has no version `{version}`")]
    UnknownVersion { agent: String, version: String },
    #[error("agent `{agent}` already has version `{version}` (same code)")]
    DuplicateVersion { agent: String, version: String },
    #[error("version `{version}` of `{agent}` was rejected and cannot become active")]
    RejectedVersion { agent: String, version: String },
    #[error("{0}")]
    Invalid(String),
}

/// What can be asked of an agent.
#[derive(Debug, Clone)]
pub enum AgentCommand {
    Register {
        manifest: AgentManifest,
        source: Option<String>,
        seed: VersionCreated,
    },
    CreateVersion(VersionCreated),
    RecordEvaluation(VersionEvaluated),
    Admit {
        version: String,
        reason: String,
    },
    Reject {
        version: String,
        reason: String,
    },
    Activate {
        version: String,
        reason: String,
    },
    Rollback {
        to_version: String,
        to_event: Option<u64>,
        reason: String,
    },
}

use crate::agent::AgentManifest;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Agent {
    name: Option<String>,
    /// version → rejected? Shared: the store keeps an agent folded in memory
    /// and validates each command on a copy, which must not copy every
    /// version (only the commands that add or reject one do).
    #[serde(with = "shared_map")]
    versions: Arc<BTreeMap<String, bool>>,
    active: Option<String>,
}

/// (De)serializes an `Arc<BTreeMap>` as the map itself.
mod shared_map {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        map: &Arc<BTreeMap<String, bool>>,
        to: S,
    ) -> Result<S::Ok, S::Error> {
        map.as_ref().serialize(to)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        from: D,
    ) -> Result<Arc<BTreeMap<String, bool>>, D::Error> {
        BTreeMap::deserialize(from).map(Arc::new)
    }
}

impl Agent {
    fn require(&self) -> Result<&str, CommandError> {
        self.name
            .as_deref()
            .ok_or_else(|| CommandError::UnknownAgent(String::new()))
    }

    fn require_version(&self, version: &str) -> Result<(), CommandError> {
        let agent = self.require()?;
        if self.versions.contains_key(version) {
            Ok(())
        } else {
            Err(CommandError::UnknownVersion {
                agent: agent.to_string(),
                version: version.to_string(),
            })
        }
    }

    fn check_new_version(&self, created: &VersionCreated) -> Result<(), CommandError> {
        if self.versions.contains_key(&created.version) {
            return Err(CommandError::DuplicateVersion {
                agent: created.agent.clone(),
                version: created.version.clone(),
            });
        }
        if let Some(parent) = &created.parent {
            self.require_version(parent)?;
        }
        Ok(())
    }

    fn check_activatable(&self, version: &str) -> Result<(), CommandError> {
        self.require_version(version)?;
        if self.versions.get(version) == Some(&true) {
            return Err(CommandError::RejectedVersion {
                agent: self.name.clone().unwrap_or_default(),
                version: version.to_string(),
            });
        }
        Ok(())
    }
}

impl Aggregate for Agent {
    const TYPE: &'static str = "agent";
    type Command = AgentCommand;
    type Event = Event;
    type Error = CommandError;
    type Services = ();

    async fn handle(
        &mut self,
        command: AgentCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CommandError> {
        let mut out: Vec<Event> = Vec::new();
        match command {
            AgentCommand::Register {
                manifest,
                source,
                seed,
            } => {
                if let Some(name) = &self.name {
                    return Err(CommandError::AlreadyRegistered(name.clone()));
                }
                if seed.parent.is_some() || seed.origin != Origin::Seed {
                    return Err(CommandError::Invalid("a seed has no parent".into()));
                }
                let agent = manifest.name.clone();
                let version = seed.version.clone();
                out.push(
                    AgentRegistered {
                        agent: agent.clone(),
                        manifest,
                        source,
                    }
                    .into(),
                );
                out.push(seed.into());
                out.push(
                    VersionAdmitted {
                        agent: agent.clone(),
                        version: version.clone(),
                        reason: "seed".into(),
                    }
                    .into(),
                );
                out.push(
                    ActiveVersionChanged {
                        agent,
                        from: None,
                        to: version,
                        reason: "seed".into(),
                    }
                    .into(),
                );
            }
            AgentCommand::CreateVersion(created) => {
                self.require()?;
                self.check_new_version(&created)?;
                out.push(created.into());
            }
            AgentCommand::RecordEvaluation(evaluated) => {
                self.require_version(&evaluated.version)?;
                out.push(evaluated.into());
            }
            AgentCommand::Admit { version, reason } => {
                self.require_version(&version)?;
                let agent = self.require()?.to_string();
                out.push(
                    VersionAdmitted {
                        agent,
                        version,
                        reason,
                    }
                    .into(),
                );
            }
            AgentCommand::Reject { version, reason } => {
                self.require_version(&version)?;
                let agent = self.require()?.to_string();
                out.push(
                    VersionRejected {
                        agent,
                        version,
                        reason,
                    }
                    .into(),
                );
            }
            AgentCommand::Activate { version, reason } => {
                self.check_activatable(&version)?;
                let agent = self.require()?.to_string();
                out.push(
                    ActiveVersionChanged {
                        agent,
                        from: self.active.clone(),
                        to: version,
                        reason,
                    }
                    .into(),
                );
            }
            AgentCommand::Rollback {
                to_version,
                to_event,
                reason,
            } => {
                self.check_activatable(&to_version)?;
                let agent = self.require()?.to_string();
                out.push(
                    RolledBack {
                        agent,
                        from: self.active.clone(),
                        to_version,
                        to_event,
                        reason,
                    }
                    .into(),
                );
            }
        }
        for event in out {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::AgentRegistered(e) => self.name = Some(e.agent),
            Event::VersionCreated(e) => {
                Arc::make_mut(&mut self.versions).insert(e.version, false);
            }
            Event::VersionRejected(e) => {
                Arc::make_mut(&mut self.versions).insert(e.version, true);
            }
            Event::ActiveVersionChanged(e) => self.active = Some(e.to),
            Event::RolledBack(e) => self.active = Some(e.to_version),
            _ => {}
        }
    }
}

impl crate::repository::Lifecycle for Agent {
    /// An agent takes commands for as long as it exists.
    fn ended(&self) -> bool {
        false
    }
}

/// Which events a [`Stream`] accepts, which opens and which closes it.
pub trait StreamKind: Send + Sync + 'static {
    const TYPE: &'static str;
    fn opens(event: &Event) -> bool;
    fn closes(event: &Event) -> bool;
    fn accepts(event: &Event) -> bool;
}

/// An append-only stream with a lifecycle: opened once, closed once.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Stream<K: StreamKind> {
    opened: bool,
    closed: bool,
    #[serde(skip)]
    kind: PhantomData<K>,
}

// By hand: a derive would require `K: Clone`, and `K` is only a marker.
impl<K: StreamKind> Clone for Stream<K> {
    fn clone(&self) -> Self {
        Self {
            opened: self.opened,
            closed: self.closed,
            kind: PhantomData,
        }
    }
}

impl<K: StreamKind> crate::repository::Lifecycle for Stream<K> {
    /// A closed stream refuses every command: nothing to keep for it.
    fn ended(&self) -> bool {
        self.closed
    }
}

impl<K: StreamKind> Default for Stream<K> {
    fn default() -> Self {
        Self {
            opened: false,
            closed: false,
            kind: PhantomData,
        }
    }
}

impl<K: StreamKind> Aggregate for Stream<K> {
    const TYPE: &'static str = K::TYPE;
    type Command = Vec<Event>;
    type Event = Event;
    type Error = CommandError;
    type Services = ();

    async fn handle(
        &mut self,
        events: Vec<Event>,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CommandError> {
        for event in events {
            if !K::accepts(&event) {
                return Err(CommandError::Invalid(format!(
                    "a {} stream does not take {}",
                    K::TYPE,
                    event.event_type()
                )));
            }
            if self.closed {
                return Err(CommandError::Invalid(format!("this {} has ended", K::TYPE)));
            }
            if K::opens(&event) == self.opened {
                return Err(CommandError::Invalid(format!(
                    "{} {} cannot come here: the {} has {} started",
                    event.event_type(),
                    if K::opens(&event) { "twice" } else { "first" },
                    K::TYPE,
                    if self.opened { "already" } else { "not" },
                )));
            }
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Event) {
        if K::opens(&event) {
            self.opened = true;
        }
        if K::closes(&event) {
            self.closed = true;
        }
    }
}

macro_rules! stream_kind {
    ($(#[$doc:meta])* $kind:ident, $type:literal, open: [$($open:ident),*], close: [$($close:ident),*], also: [$($also:ident),*]) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $kind;
        impl StreamKind for $kind {
            const TYPE: &'static str = $type;
            fn opens(e: &Event) -> bool { matches!(e, $(Event::$open(_))|*) }
            #[allow(unreachable_patterns)]
            fn closes(e: &Event) -> bool { matches!(e, $(Event::$close(_))|*) }
            #[allow(unreachable_patterns)]
            fn accepts(e: &Event) -> bool {
                matches!(e, $(Event::$open(_))|* $(| Event::$close(_))* $(| Event::$also(_))*)
            }
        }
    };
}

stream_kind!(
    /// One evolution run.
    RunKind, "run", open: [RunStarted], close: [RunCompleted, RunFailed],
    also: [RunInterrupted, AttemptStarted, DiagnosisMade, LlmCallMade, AttemptFinished]);
stream_kind!(
    /// One ReasoningBank strategy; pruning ends it.
    StrategyKind, "strategy", open: [StrategyStored], close: [StrategyPruned], also: [StrategyOutcomeRecorded]);
stream_kind!(
    /// One sandbox execution.
    SandboxKind, "sandbox_execution", open: [SandboxExecutionStarted], close: [SandboxExecutionFinished], also: []);

stream_kind!(
    /// One benchmark evaluation: its trajectories, then its metrics.
    EvaluationKind, "evaluation", open: [BenchmarkStarted], close: [BenchmarkCompleted], also: [TrajectoryRecorded]);

pub type Evaluation = Stream<EvaluationKind>;
pub type Run = Stream<RunKind>;
pub type Strategy = Stream<StrategyKind>;
pub type SandboxExecution = Stream<SandboxKind>;
