//! Who, when and why: the metadata every event carries.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

/// Attached to every event. Secrets never go here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub time: DateTime<Utc>,
    /// Shared by everything one user action or one run set in motion.
    pub correlation_id: String,
    /// The event (as `position`) or command that caused this one.
    pub causation_id: Option<String>,
    pub run_id: Option<String>,
    pub attempt_id: Option<String>,
    /// The emitting actor, e.g. `cli`, `agent:binpack`, `sandbox-supervisor`.
    pub actor: String,
}

impl Metadata {
    /// Fresh metadata for `actor`, with a new correlation id.
    pub fn new(actor: impl Into<String>) -> Self {
        Self {
            time: now(),
            correlation_id: uuid::Uuid::new_v4().to_string(),
            causation_id: None,
            run_id: None,
            attempt_id: None,
            actor: actor.into(),
        }
    }

    pub fn with_run(mut self, run_id: impl Into<String>) -> Self {
        self.correlation_id = run_id.into();
        self.run_id = Some(self.correlation_id.clone());
        self
    }

    pub fn with_attempt(mut self, attempt_id: impl Into<String>) -> Self {
        self.attempt_id = Some(attempt_id.into());
        self
    }

    pub fn caused_by(mut self, cause: impl Into<String>) -> Self {
        self.causation_id = Some(cause.into());
        self
    }

    /// The same context, stamped now (for the next event of a long action).
    pub fn now(&self) -> Self {
        Self {
            time: now(),
            ..self.clone()
        }
    }

    pub(crate) fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::new();
        map.insert(
            "time".into(),
            self.time.to_rfc3339_opts(SecondsFormat::Micros, true),
        );
        map.insert("correlation_id".into(), self.correlation_id.clone());
        map.insert("actor".into(), self.actor.clone());
        for (key, value) in [
            ("causation_id", &self.causation_id),
            ("run_id", &self.run_id),
            ("attempt_id", &self.attempt_id),
        ] {
            if let Some(v) = value {
                map.insert(key.into(), v.clone());
            }
        }
        map
    }

    /// Metadata as stored: a JSON object of strings (keys as [`Self::to_map`]
    /// writes them; others are ignored).
    pub(crate) fn decode(text: &str) -> Result<Self, String> {
        let stored: StoredMetadata = serde_json::from_str(text)
            .map_err(|e| format!("metadata is not a JSON object of strings: {e}"))?;
        let time = stored.time.ok_or("metadata has no `time`")?;
        let time = DateTime::parse_from_rfc3339(&time)
            .map_err(|e| format!("metadata `time` {time:?}: {e}"))?
            .with_timezone(&Utc);
        Ok(Self {
            time,
            correlation_id: stored.correlation_id.unwrap_or_default(),
            causation_id: stored.causation_id,
            run_id: stored.run_id,
            attempt_id: stored.attempt_id,
            actor: stored.actor.unwrap_or_default(),
        })
    }
}

/// The stored form, decoded field by field rather than through a map.
#[derive(Deserialize)]
struct StoredMetadata {
    time: Option<String>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    run_id: Option<String>,
    attempt_id: Option<String>,
    actor: Option<String>,
}

/// Now, at the microsecond precision the log stores.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
