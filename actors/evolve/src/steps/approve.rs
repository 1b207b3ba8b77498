//! Approve: a promotion may wait for a person. A port — the default
//! approves every promotion at once; human approval plugs in here without
//! touching the loop.

use async_trait::async_trait;

/// A promotion the loop would make.
pub struct ApprovalRequest<'a> {
    pub attempt_id: &'a str,
    pub agent: &'a str,
    pub child: &'a str,
    /// The child's proposal, e.g. `mutate:constant: changed 1.0 -> 0.5`.
    pub summary: &'a str,
    /// The child's patch against its parent.
    pub patch: &'a str,
    pub score: Option<f64>,
    /// Why the decide step promotes it.
    pub reason: &'a str,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Approval {
    /// Promote now.
    Approved,
    /// Do not promote now: the child stays admitted, with this reason.
    Held { reason: String },
}

#[async_trait]
pub trait Approver: Send + Sync {
    async fn approve(&self, request: &ApprovalRequest<'_>) -> Approval;
}

/// Approves every promotion (`--approve never`, the default).
pub struct ApproveAll;

#[async_trait]
impl Approver for ApproveAll {
    async fn approve(&self, _: &ApprovalRequest<'_>) -> Approval {
        Approval::Approved
    }
}

/// The outcome and reason of a promotion after the approver answered.
pub fn apply(approval: Approval, reason: String) -> (&'static str, String) {
    match approval {
        Approval::Approved => ("promoted", reason),
        Approval::Held { reason: why } => ("admitted", format!("{reason}; not promoted: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_default_approves_and_a_hold_keeps_the_child_admitted() {
        let request = ApprovalRequest {
            attempt_id: "r/g1/a0",
            agent: "a",
            child: "c",
            summary: "s",
            patch: "",
            score: Some(0.6),
            reason: "beats best",
        };
        assert_eq!(ApproveAll.approve(&request).await, Approval::Approved);
        assert_eq!(
            apply(Approval::Approved, "beats best".into()),
            ("promoted", "beats best".to_string())
        );
        let held = Approval::Held {
            reason: "awaiting approval".into(),
        };
        assert_eq!(
            apply(held, "beats best".into()),
            (
                "admitted",
                "beats best; not promoted: awaiting approval".to_string()
            )
        );
    }
}
