//! A model's reply turned into a child, strictly.
//!
//! The reply holds SEARCH/REPLACE blocks (aider / OpenEvolve style) or whole
//! files. A block whose SEARCH text is not found exactly once, a file that is
//! not evolvable, or a change outside the file's EVOLVE-BLOCK regions is an
//! error with a message written for the model — the proposer feeds it back
//! for a bounded number of rounds and never silently skips a block.

use dgm_propose::{CodeTree, FilePolicy};

/// One edit from a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Replace the one exact occurrence of `search` in `path` with `replace`.
    SearchReplace {
        path: String,
        search: String,
        replace: String,
    },
    /// Replace (or create) `path` with `content`.
    WholeFile { path: String, content: String },
}

impl Edit {
    pub fn path(&self) -> &str {
        match self {
            Edit::SearchReplace { path, .. } | Edit::WholeFile { path, .. } => path,
        }
    }
}

/// Why a reply could not become a child (the text is meant for the model).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error(
        "the reply holds no edit: use SEARCH/REPLACE blocks or a whole file between `<<<<<<< FILE path` and `>>>>>>> END`"
    )]
    NoEdits,
    #[error("block {block}: {reason}")]
    Malformed { block: usize, reason: String },
    #[error(
        "block {block}: no file named: put the file's path on the line before `<<<<<<< SEARCH`"
    )]
    NoPath { block: usize },
    #[error("block {block} edits `{path}`, which is not an evolvable file (evolvable: {allowed})")]
    NotEvolvable {
        block: usize,
        path: String,
        allowed: String,
    },
    #[error(
        "block {block}: the SEARCH text does not match `{path}` exactly (whitespace and indentation included); the closest line is {closest:?}"
    )]
    NoMatch {
        block: usize,
        path: String,
        closest: String,
    },
    #[error(
        "block {block}: the SEARCH text occurs {count} times in `{path}`; include more lines so it matches exactly once"
    )]
    Ambiguous {
        block: usize,
        path: String,
        count: usize,
    },
    #[error(
        "`{path}` changes outside its EVOLVE-BLOCK-START / EVOLVE-BLOCK-END region: only the code between the markers may change, and the markers must stay"
    )]
    OutsideRegion { path: String },
    #[error("`{path}`: {reason}")]
    Markers { path: String, reason: String },
}

const SEARCH: &str = "<<<<<<< SEARCH";
const DIVIDER: &str = "=======";
const REPLACE: &str = ">>>>>>> REPLACE";
const FILE: &str = "<<<<<<< FILE";
const END: &str = ">>>>>>> END";

fn clean_path(line: &str) -> Option<String> {
    let mut p = line.trim();
    for prefix in ["File:", "FILE:", "file:", "Path:", "path:", "#", "//"] {
        p = p.strip_prefix(prefix).unwrap_or(p).trim();
    }
    let p = p
        .trim_matches(|c| c == '`' || c == '*' || c == '"' || c == '\'')
        .trim()
        .trim_end_matches(':');
    let p = p.strip_prefix("./").unwrap_or(p);
    (!p.is_empty() && !p.contains(char::is_whitespace) && !p.starts_with("```"))
        .then(|| p.to_string())
}

/// Parses the edits of a reply. `default_path` names the file of a block
/// with no path (when exactly one file is evolvable).
pub fn parse_reply(reply: &str, default_path: Option<&str>) -> Result<Vec<Edit>, EditError> {
    let lines: Vec<&str> = reply.split_inclusive('\n').collect();
    let bare = |l: &str| l.trim_end_matches(['\n', '\r']).trim_end().to_string();
    let mut edits = Vec::new();
    let mut last_path: Option<String> = None;
    let mut i = 0;
    let mut block = 0;
    while i < lines.len() {
        let line = bare(lines[i]);
        if line.trim_start() == SEARCH {
            block += 1;
            let path = (0..i)
                .rev()
                .map(|j| bare(lines[j]))
                .find(|l| !l.trim().is_empty())
                .filter(|l| !l.trim_start().starts_with("```") || l.trim().len() > 3)
                .and_then(|l| {
                    // "```python priority.py" or a plain path line.
                    let l = l.trim();
                    let l = match l.strip_prefix("```") {
                        Some(rest) => rest.split_whitespace().last().unwrap_or("").to_string(),
                        None => l.to_string(),
                    };
                    clean_path(&l).filter(|p| p.contains('.') || p.contains('/'))
                })
                .or_else(|| last_path.clone())
                .or_else(|| default_path.map(str::to_string))
                .ok_or(EditError::NoPath { block })?;
            let mut search = String::new();
            let mut replace = String::new();
            let mut in_replace = false;
            let mut closed = false;
            i += 1;
            while i < lines.len() {
                let l = bare(lines[i]);
                if !in_replace && l.trim_start() == DIVIDER {
                    in_replace = true;
                } else if in_replace && l.trim_start() == REPLACE {
                    closed = true;
                    break;
                } else if l.trim_start() == SEARCH {
                    break;
                } else if in_replace {
                    replace.push_str(lines[i]);
                } else {
                    search.push_str(lines[i]);
                }
                i += 1;
            }
            if !closed {
                return Err(EditError::Malformed {
                    block,
                    reason: format!(
                        "a block must be `{SEARCH}`, the old lines, `{DIVIDER}`, the new lines, `{REPLACE}`"
                    ),
                });
            }
            last_path = Some(path.clone());
            edits.push(Edit::SearchReplace {
                path,
                search,
                replace,
            });
            i += 1;
            continue;
        }
        if let Some(rest) = line.trim_start().strip_prefix(FILE) {
            block += 1;
            let path = clean_path(rest)
                .or_else(|| default_path.map(str::to_string))
                .ok_or(EditError::NoPath { block })?;
            let mut content = String::new();
            let mut closed = false;
            i += 1;
            while i < lines.len() {
                if bare(lines[i]).trim_start() == END {
                    closed = true;
                    break;
                }
                content.push_str(lines[i]);
                i += 1;
            }
            if !closed {
                return Err(EditError::Malformed {
                    block,
                    reason: format!("a whole file must end with a line `{END}`"),
                });
            }
            edits.push(Edit::WholeFile {
                path,
                content: strip_fences(&content),
            });
            i += 1;
            continue;
        }
        i += 1;
    }
    if edits.is_empty() {
        // A lone fenced code block is a whole-file rewrite of the one evolvable file.
        if let Some(path) = default_path
            && let Some(code) = lone_fence(reply)
        {
            edits.push(Edit::WholeFile {
                path: path.to_string(),
                content: code,
            });
        }
    }
    if edits.is_empty() {
        return Err(EditError::NoEdits);
    }
    Ok(edits)
}

/// The body of the only fenced code block in `text`, if there is exactly one.
fn lone_fence(text: &str) -> Option<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(body) => blocks.push(body),
                None => current = Some(String::new()),
            }
        } else if let Some(body) = current.as_mut() {
            body.push_str(line);
        }
    }
    (blocks.len() == 1).then(|| blocks.remove(0))
}

/// A whole file wrapped in a fence: the fence removed.
fn strip_fences(content: &str) -> String {
    let trimmed = content.trim();
    if trimmed.starts_with("```") && trimmed.ends_with("```") && trimmed.len() > 6 {
        let body = trimmed[3..trimmed.len() - 3]
            .split_once('\n')
            .map(|(_, b)| b)
            .unwrap_or("");
        let mut body = body.to_string();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        return body;
    }
    content.to_string()
}

/// Applies `edits` to `parent` in order, enforcing `policy` and EVOLVE-BLOCK
/// regions. Returns the child.
pub fn apply_edits(
    parent: &CodeTree,
    edits: &[Edit],
    policy: &FilePolicy,
) -> Result<CodeTree, EditError> {
    let mut child = parent.clone();
    for (index, edit) in edits.iter().enumerate() {
        let block = index + 1;
        let path = edit.path().to_string();
        if !policy.is_evolvable(&path) {
            return Err(EditError::NotEvolvable {
                block,
                path,
                allowed: policy.evolvable.join(", "),
            });
        }
        match edit {
            Edit::WholeFile { content, .. } => child.insert(path.clone(), content.as_bytes()),
            Edit::SearchReplace {
                search, replace, ..
            } => {
                let current = child.text(&path).map(str::to_string);
                let Some(current) = current else {
                    if search.trim().is_empty() {
                        child.insert(path.clone(), replace.as_bytes());
                        continue;
                    }
                    return Err(EditError::NoMatch {
                        block,
                        path,
                        closest: "<the file does not exist>".into(),
                    });
                };
                let count = if search.is_empty() {
                    0
                } else {
                    current.matches(search.as_str()).count()
                };
                match count {
                    1 => {
                        let updated = current.replacen(search.as_str(), replace, 1);
                        child.insert(path.clone(), updated.into_bytes());
                    }
                    0 => {
                        return Err(EditError::NoMatch {
                            block,
                            closest: closest_line(&current, search),
                            path,
                        });
                    }
                    count => {
                        return Err(EditError::Ambiguous { block, path, count });
                    }
                }
            }
        }
    }
    for path in parent.changed_paths(&child) {
        if let (Some(old), Some(new)) = (parent.text(&path), child.text(&path)) {
            check_regions(&path, old, new)?;
        }
    }
    Ok(child)
}

/// The line of `text` most like the first non-blank line of `search`.
fn closest_line(text: &str, search: &str) -> String {
    let wanted = search
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let score = |line: &str| {
        let line = line.trim();
        let common = line
            .chars()
            .zip(wanted.chars())
            .take_while(|(a, b)| a == b)
            .count();
        let shared_words = line
            .split_whitespace()
            .filter(|w| wanted.split_whitespace().any(|x| x == *w))
            .count();
        common + 4 * shared_words
    };
    text.lines()
        .max_by_key(|l| score(l))
        .unwrap_or("")
        .to_string()
}

/// Splits a file into (outside, inside, outside, …) around EVOLVE-BLOCK
/// markers; marker lines belong to the outside parts. `None` when the file
/// has no markers.
fn regions(path: &str, text: &str) -> Result<Option<Vec<String>>, EditError> {
    let mut parts = vec![String::new()];
    let mut inside = false;
    let mut any = false;
    for line in text.split_inclusive('\n') {
        if line.contains("EVOLVE-BLOCK-START") {
            if inside {
                return Err(EditError::Markers {
                    path: path.into(),
                    reason: "EVOLVE-BLOCK-START inside a block".into(),
                });
            }
            any = true;
            inside = true;
            if let Some(p) = parts.last_mut() {
                p.push_str(line);
            }
            parts.push(String::new());
        } else if line.contains("EVOLVE-BLOCK-END") {
            if !inside {
                return Err(EditError::Markers {
                    path: path.into(),
                    reason: "EVOLVE-BLOCK-END without a START".into(),
                });
            }
            inside = false;
            parts.push(line.to_string());
        } else if let Some(p) = parts.last_mut() {
            p.push_str(line);
        }
    }
    if inside {
        return Err(EditError::Markers {
            path: path.into(),
            reason: "EVOLVE-BLOCK-START without an END".into(),
        });
    }
    Ok(any.then_some(parts))
}

/// When `old` has EVOLVE-BLOCK markers, `new` must keep them and change
/// nothing outside them.
pub fn check_regions(path: &str, old: &str, new: &str) -> Result<(), EditError> {
    let Some(old_parts) = regions(path, old)? else {
        return Ok(());
    };
    let new_parts = match regions(path, new) {
        Ok(Some(p)) => p,
        _ => return Err(EditError::OutsideRegion { path: path.into() }),
    };
    if old_parts.len() != new_parts.len() {
        return Err(EditError::OutsideRegion { path: path.into() });
    }
    // Even indices are outside the blocks.
    let outside_same = old_parts
        .iter()
        .zip(&new_parts)
        .step_by(2)
        .all(|(a, b)| a == b);
    if outside_same {
        Ok(())
    } else {
        Err(EditError::OutsideRegion { path: path.into() })
    }
}

/// `(start, end)` line numbers (1-based, the marker lines) of each EVOLVE-BLOCK, for prompts.
pub fn block_lines(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, line) in text.lines().enumerate() {
        if line.contains("EVOLVE-BLOCK-START") {
            start = Some(i + 1);
        } else if line.contains("EVOLVE-BLOCK-END")
            && let Some(s) = start.take()
        {
            out.push((s, i + 1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIORITY: &str = "\"\"\"Doc.\"\"\"\n\n\ndef priority(item, bins):\n    # EVOLVE-BLOCK-START\n    scores = []\n    for b in bins:\n        score = 1.0\n        scores.append(score)\n    return scores\n    # EVOLVE-BLOCK-END\n";

    fn parent() -> CodeTree {
        CodeTree::from_texts([("priority.py", PRIORITY), ("pack.py", "import priority\n")])
    }

    fn policy() -> FilePolicy {
        FilePolicy::new(&["priority.py".into()], &["pack.py".into()])
    }

    #[test]
    fn search_replace_blocks_apply_exactly() {
        let reply = "Best Fit:\n\npriority.py\n<<<<<<< SEARCH\n        score = 1.0\n=======\n        score = -(b - item)\n>>>>>>> REPLACE\n";
        let edits = parse_reply(reply, None).unwrap();
        assert_eq!(edits.len(), 1);
        let child = apply_edits(&parent(), &edits, &policy()).unwrap();
        assert!(
            child
                .text("priority.py")
                .unwrap()
                .contains("score = -(b - item)")
        );
        assert_eq!(child.text("pack.py"), parent().text("pack.py"));
    }

    #[test]
    fn a_fenced_block_with_the_path_in_the_fence_works() {
        let reply = "```python priority.py\n<<<<<<< SEARCH\n        score = 1.0\n=======\n        score = 2.0\n>>>>>>> REPLACE\n```\n";
        let edits = parse_reply(reply, None).unwrap();
        assert_eq!(edits[0].path(), "priority.py");
    }

    #[test]
    fn mismatches_and_ambiguity_are_errors_naming_the_block() {
        let reply = "priority.py\n<<<<<<< SEARCH\n    score = 1.0\n=======\n    score = 2.0\n>>>>>>> REPLACE\n";
        let edits = parse_reply(reply, None).unwrap();
        // Wrong indentation: "    score" does occur inside "        score", so use a non-match.
        let reply2 = reply.replace("    score = 1.0\n=", "  scor = 1.0\n=");
        let e =
            apply_edits(&parent(), &parse_reply(&reply2, None).unwrap(), &policy()).unwrap_err();
        assert!(matches!(e, EditError::NoMatch { block: 1, .. }), "{e}");
        assert!(e.to_string().contains("score = 1.0"), "{e}");
        let dup = CodeTree::from_texts([("priority.py", "    score = 1.0\n    score = 1.0\n")]);
        let e = apply_edits(&dup, &edits, &policy()).unwrap_err();
        assert!(matches!(e, EditError::Ambiguous { count: 2, .. }), "{e}");
    }

    #[test]
    fn files_outside_the_policy_and_code_outside_blocks_are_rejected() {
        let reply =
            "pack.py\n<<<<<<< SEARCH\nimport priority\n=======\nimport os\n>>>>>>> REPLACE\n";
        let e = apply_edits(&parent(), &parse_reply(reply, None).unwrap(), &policy()).unwrap_err();
        assert!(matches!(e, EditError::NotEvolvable { .. }), "{e}");
        let reply = "priority.py\n<<<<<<< SEARCH\n\"\"\"Doc.\"\"\"\n=======\n\"\"\"Changed.\"\"\"\n>>>>>>> REPLACE\n";
        let e = apply_edits(&parent(), &parse_reply(reply, None).unwrap(), &policy()).unwrap_err();
        assert!(matches!(e, EditError::OutsideRegion { .. }), "{e}");
        let reply =
            "priority.py\n<<<<<<< SEARCH\n    # EVOLVE-BLOCK-END\n=======\n>>>>>>> REPLACE\n";
        let e = apply_edits(&parent(), &parse_reply(reply, None).unwrap(), &policy()).unwrap_err();
        assert!(matches!(e, EditError::OutsideRegion { .. }), "{e}");
    }

    #[test]
    fn whole_files_and_lone_fences_rewrite_the_file() {
        let new = PRIORITY.replace("score = 1.0", "score = -(b - item)");
        let reply = format!("<<<<<<< FILE priority.py\n{new}>>>>>>> END\n");
        let child = apply_edits(&parent(), &parse_reply(&reply, None).unwrap(), &policy()).unwrap();
        assert_eq!(child.text("priority.py"), Some(new.as_str()));
        let reply = format!("Here you go:\n```python\n{new}```\n");
        let edits = parse_reply(&reply, Some("priority.py")).unwrap();
        let child = apply_edits(&parent(), &edits, &policy()).unwrap();
        assert_eq!(child.text("priority.py"), Some(new.as_str()));
        assert_eq!(parse_reply("no edits here", None), Err(EditError::NoEdits));
    }

    #[test]
    fn unterminated_blocks_are_malformed() {
        let reply =
            "priority.py\n<<<<<<< SEARCH\n        score = 1.0\n=======\n        score = 2.0\n";
        assert!(matches!(
            parse_reply(reply, None),
            Err(EditError::Malformed { block: 1, .. })
        ));
    }
}
