//! Validate: a proposed child must touch only evolvable files, parse, make
//! a patch against its parent, and be new code — else the attempt ends
//! `invalid` or `duplicate` before anything runs.

use dgm_events::Files;
use dgm_events::blobs::tree_hash;
use dgm_propose::{CodeTree, FilePolicy, Proposal};

/// A child that may be created.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidChild {
    pub files: Files,
    pub tree_hash: String,
    /// The version id: the tree hash's first 12 hex digits.
    pub version: String,
    /// Unified diff against the parent.
    pub patch: String,
}

/// Why a child may not be created: the attempt's outcome and reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub outcome: &'static str,
    pub reason: String,
}

/// Checks `proposal` against `parent` and `policy`; `exists` says whether
/// a version id is in the archive already.
pub fn validate(
    parent: &CodeTree,
    proposal: &Proposal,
    policy: &FilePolicy,
    exists: impl FnOnce(&str) -> bool,
) -> Result<ValidChild, Refused> {
    let invalid = |reason: String| Refused {
        outcome: "invalid",
        reason,
    };
    dgm_propose::patch::check_child(parent, &proposal.files, policy)
        .map_err(|e| invalid(format!("validation failed: {e}")))?;
    let patch = dgm_propose::patch::diff(parent, &proposal.files)
        .map_err(|e| invalid(format!("patch failed: {e}")))?;
    let files: Files = proposal.files.0.clone();
    let hash = tree_hash(&files);
    let version = hash[..12].to_string();
    if exists(&version) {
        return Err(Refused {
            outcome: "duplicate",
            reason: format!("the child equals existing version {version}"),
        });
    }
    Ok(ValidChild {
        files,
        tree_hash: hash,
        version,
        patch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, &str)]) -> CodeTree {
        CodeTree(
            entries
                .iter()
                .map(|(p, b)| (p.to_string(), b.as_bytes().to_vec()))
                .collect(),
        )
    }

    fn proposal(files: CodeTree) -> Proposal {
        Proposal {
            files,
            kind: "mutate:constant".into(),
            summary: "s".into(),
        }
    }

    #[test]
    fn a_child_is_new_code_in_evolvable_files_only() {
        let parent = tree(&[("a.py", "x = 1\n"), ("eval.py", "ok = 1\n")]);
        let policy = FilePolicy::new(&["a.py".to_string()], &["eval.py".to_string()]);
        let good = proposal(tree(&[("a.py", "x = 2\n"), ("eval.py", "ok = 1\n")]));
        let child = validate(&parent, &good, &policy, |_| false).expect("valid");
        assert_eq!(child.version, &child.tree_hash[..12]);
        assert!(child.patch.contains("+x = 2"));
        let seen = validate(&parent, &good, &policy, |_| true).expect_err("duplicate");
        assert_eq!(seen.outcome, "duplicate");
        let protected = proposal(tree(&[("a.py", "x = 1\n"), ("eval.py", "ok = 2\n")]));
        let refused = validate(&parent, &protected, &policy, |_| false).expect_err("invalid");
        assert_eq!(refused.outcome, "invalid");
        assert!(
            refused.reason.starts_with("validation failed"),
            "{}",
            refused.reason
        );
    }
}
