//! Set-up shared by the projector tests: the agent and versions their
//! histories are made of.

use dgm_events::*;

/// A Python agent named `name` whose `*.py` files evolve.
pub fn manifest(name: &str) -> AgentManifest {
    AgentManifest {
        name: name.into(),
        language: "python".into(),
        description: String::new(),
        run: vec!["python3".into()],
        evolvable: vec!["*.py".into()],
        protected: vec![],
        suite: None,
    }
}

/// Version `version` of `agent`, a child of `parent` (the seed without one),
/// with a patch and summary of its own.
pub fn created(agent: &str, version: &str, parent: Option<&str>) -> VersionCreated {
    VersionCreated {
        agent: agent.into(),
        version: version.into(),
        parent: parent.map(Into::into),
        tree_hash: format!("h{version}"),
        patch: format!("--- a\n+++ b\n@@ {version} @@\n"),
        origin: if parent.is_some() {
            Origin::Proposer
        } else {
            Origin::Seed
        },
        summary: format!("version {version}"),
    }
}
