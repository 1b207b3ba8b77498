//! Prompts: templates a user can override, filled from a proposal request.
//!
//! The default templates live in `actors/llm/prompts/` and are compiled in;
//! a prompt directory given by the user (`--prompt-dir`) replaces any of
//! them by file name (`system.md`, `propose.md`, `fix.md`,
//! `diagnose_system.md`, `diagnose.md`). Placeholders are `{{name}}`; the
//! sections they stand for are rendered here, from the request alone, so the
//! same request always gives the same prompt.

use std::collections::BTreeMap;
use std::path::Path;

use dgm_propose::{CodeTree, ProposalRequest};

use crate::client::shorten;
use crate::edits::block_lines;

/// The template names, with their compiled-in defaults.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("system.md", include_str!("../prompts/system.md")),
    ("propose.md", include_str!("../prompts/propose.md")),
    ("fix.md", include_str!("../prompts/fix.md")),
    (
        "diagnose_system.md",
        include_str!("../prompts/diagnose_system.md"),
    ),
    ("diagnose.md", include_str!("../prompts/diagnose.md")),
];

/// The placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "code",
    "evolvable",
    "protected",
    "parent_score",
    "diagnosis",
    "analysis",
    "failures",
    "strategies",
    "lineage",
    "error",
];

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read prompt template {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "prompt template {name} uses unknown placeholder {{{{{placeholder}}}}} (known: {known})"
    )]
    Unknown {
        name: String,
        placeholder: String,
        known: String,
    },
}

/// The five templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates(BTreeMap<String, String>);

impl Default for Templates {
    fn default() -> Self {
        Self(
            DEFAULTS
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
        )
    }
}

impl Templates {
    /// The defaults, with any file of the same name in `dir` taking over.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut templates = Self::default();
        if let Some(dir) = dir {
            for (name, _) in DEFAULTS {
                let path = dir.join(name);
                if path.exists() {
                    let text =
                        std::fs::read_to_string(&path).map_err(|source| TemplateError::Read {
                            path: path.display().to_string(),
                            source,
                        })?;
                    templates.0.insert(name.to_string(), text);
                }
            }
        }
        templates.check()?;
        Ok(templates)
    }

    /// Replaces one template (tests, embedding programs).
    pub fn with(mut self, name: &str, text: &str) -> Result<Self, TemplateError> {
        self.0.insert(name.to_string(), text.to_string());
        self.check()?;
        Ok(self)
    }

    fn check(&self) -> Result<(), TemplateError> {
        for (name, text) in &self.0 {
            for placeholder in placeholders(text) {
                if !PLACEHOLDERS.contains(&placeholder.as_str()) {
                    return Err(TemplateError::Unknown {
                        name: name.clone(),
                        placeholder,
                        known: PLACEHOLDERS.join(", "),
                    });
                }
            }
        }
        Ok(())
    }

    /// Template `name` with its placeholders filled from `values`.
    pub fn render(&self, name: &str, values: &BTreeMap<&str, String>) -> String {
        let text = self.0.get(name).map(String::as_str).unwrap_or("");
        let mut out = String::with_capacity(text.len() * 2);
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find("}}") {
                Some(end) => {
                    let key = after[..end].trim();
                    match values.get(key) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&rest[start..start + 2 + end + 2]),
                    }
                    rest = &after[end + 2..];
                }
                None => {
                    out.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }
}

fn placeholders(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        out.push(after[..end].trim().to_string());
        rest = &after[end + 2..];
    }
    out
}

/// The evolvable files of `tree`, each in a fence headed by its path, with
/// their EVOLVE-BLOCK line ranges.
pub fn render_code(tree: &CodeTree, request: &ProposalRequest) -> String {
    let policy = request.policy();
    let mut out = String::new();
    for path in tree.paths().filter(|p| policy.is_evolvable(p)) {
        let Some(text) = tree.text(path) else {
            continue;
        };
        let blocks = block_lines(text);
        let note = if blocks.is_empty() {
            String::new()
        } else {
            let ranges: Vec<String> = blocks
                .iter()
                .map(|(s, e)| format!("lines {s}–{e}"))
                .collect();
            format!(" (EVOLVE-BLOCK: {}; change only inside)", ranges.join(", "))
        };
        let lang = if path.ends_with(".py") { "python" } else { "" };
        out.push_str(&format!("{path}{note}\n```{lang}\n{text}"));
        if !text.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("```\n\n");
    }
    if out.is_empty() {
        out.push_str("(no evolvable text file)\n");
    }
    out
}

/// Every placeholder's value for `request` (`error` empty).
pub fn values(request: &ProposalRequest) -> BTreeMap<&'static str, String> {
    let d = &request.diagnosis;
    let mut v = BTreeMap::new();
    v.insert("code", render_code(&request.parent, request));
    v.insert("evolvable", request.evolvable.join(", "));
    v.insert(
        "protected",
        if request.protected.is_empty() {
            "-".into()
        } else {
            request.protected.join(", ")
        },
    );
    v.insert(
        "parent_score",
        request
            .parent_score
            .map(|s| format!("{s:.6}"))
            .unwrap_or_else(|| "not scored yet".into()),
    );
    let mut diagnosis = d.summary.clone();
    if !d.failure_categories.is_empty() {
        let cats: Vec<String> = d
            .failure_categories
            .iter()
            .map(|c| format!("{} ×{}", c.category, c.count))
            .collect();
        diagnosis.push_str(&format!("\nFailure categories: {}", cats.join(", ")));
    }
    for r in &d.rationales {
        diagnosis.push_str(&format!("\n- {r}"));
    }
    v.insert("diagnosis", diagnosis);
    v.insert(
        "analysis",
        match &d.analysis {
            None => String::new(),
            Some(a) => {
                let mut s = format!(
                    "## Analysis ({})\n\n{}\n\nChosen proposal: {}\n\nImplementation suggestion: {}\n\nProblem statement: {}\n",
                    a.model, a.summary, a.chosen_proposal, a.implementation_suggestion, a.problem_statement
                );
                if !a.possible_improvements.is_empty() {
                    s.push_str("\nOther possible improvements:\n");
                    for i in &a.possible_improvements {
                        s.push_str(&format!("- {i}\n"));
                    }
                }
                s
            }
        },
    );
    v.insert(
        "failures",
        if d.failures.is_empty() {
            "(none recorded)".into()
        } else {
            d.failures
                .iter()
                .map(|f| {
                    format!(
                        "- task {} ({}){}\n```\n{}\n```",
                        f.task,
                        f.category,
                        f.rationale
                            .as_ref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default(),
                        shorten(f.excerpt.trim(), 1500)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    v.insert(
        "strategies",
        if request.strategies.is_empty() {
            "(none yet)".into()
        } else {
            request
                .strategies
                .iter()
                .map(|s| {
                    format!(
                        "- [{}] win rate {:.0}% over {} uses: {} (diagnosis: {})",
                        s.kind,
                        s.win_rate * 100.0,
                        s.uses,
                        s.summary,
                        s.diagnosis
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    v.insert(
        "lineage",
        if request.lineage.is_empty() {
            "(none yet)".into()
        } else {
            request
                .lineage
                .iter()
                .map(|a| {
                    format!(
                        "- from {}: {} → {} (score {}): {}",
                        a.parent,
                        a.summary,
                        a.outcome,
                        a.score
                            .map(|s| format!("{s:.6}"))
                            .unwrap_or_else(|| "-".into()),
                        a.reason
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    v.insert("error", String::new());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_unknown_ones_refused() {
        let t = Templates::default()
            .with("fix.md", "E: {{error}}!")
            .unwrap();
        let mut v = BTreeMap::new();
        v.insert("error", "boom".to_string());
        assert_eq!(t.render("fix.md", &v), "E: boom!");
        assert!(Templates::default().with("fix.md", "{{nope}}").is_err());
    }

    #[test]
    fn a_prompt_dir_overrides_by_file_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("system.md"), "custom system").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        assert_eq!(t.render("system.md", &BTreeMap::new()), "custom system");
        assert!(t.render("propose.md", &BTreeMap::new()).contains("SEARCH"));
    }
}
