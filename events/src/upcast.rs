//! Lifting stored events of old versions to the current one.
//!
//! Each entry maps (event type, stored version) to a function producing the
//! next version's payload. The same table serves the global log reader and
//! the event store when it loads an aggregate.

use serde_json::Value;

use crate::event::Event;

struct Step {
    event_type: &'static str,
    from: &'static str,
    to: &'static str,
    lift: fn(Value) -> Value,
}

const STEPS: &[Step] = &[Step {
    // v1 manifests had no `language`: every agent was Python then.
    event_type: "AgentRegistered",
    from: "1",
    to: "2",
    lift: |mut payload| {
        if let Some(manifest) = payload
            .get_mut("AgentRegistered")
            .and_then(|e| e.get_mut("manifest"))
            .and_then(Value::as_object_mut)
        {
            manifest
                .entry("language")
                .or_insert_with(|| Value::String("python".into()));
        }
        payload
    },
}];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UpcastError {
    #[error("unknown event type `{0}` (written by a newer dgm?)")]
    UnknownType(String),
    #[error(
        "`{event_type}` version {found} is not one this dgm can read (it writes version {current}); upgrade dgm"
    )]
    UnknownVersion {
        event_type: String,
        found: String,
        current: String,
    },
}

/// Brings `payload` from `version` to the current version of `event_type`.
pub fn upcast(event_type: &str, version: &str, mut payload: Value) -> Result<Value, UpcastError> {
    let current = Event::current_version(event_type)
        .ok_or_else(|| UpcastError::UnknownType(event_type.to_string()))?;
    let mut version = version.to_string();
    while version != current {
        let step = STEPS
            .iter()
            .find(|s| s.event_type == event_type && s.from == version)
            .ok_or_else(|| UpcastError::UnknownVersion {
                event_type: event_type.to_string(),
                found: version.clone(),
                current: current.to_string(),
            })?;
        payload = (step.lift)(payload);
        version = step.to.to_string();
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifts_v1_agent_registered() {
        let v1 = serde_json::json!({"AgentRegistered": {"agent": "a", "manifest": {
            "name": "a", "run": ["python3"], "evolvable": ["a.py"]}}});
        let v2 = upcast("AgentRegistered", "1", v1).unwrap();
        let event: Event = serde_json::from_value(v2).unwrap();
        match event {
            Event::AgentRegistered(e) => assert_eq!(e.manifest.language, "python"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_future_versions() {
        let err = upcast("AgentRegistered", "9", serde_json::json!({})).unwrap_err();
        assert!(matches!(err, UpcastError::UnknownVersion { .. }));
        assert!(err.to_string().contains("upgrade dgm"));
        assert!(matches!(
            upcast("Nope", "1", serde_json::json!({})),
            Err(UpcastError::UnknownType(_))
        ));
    }
}
