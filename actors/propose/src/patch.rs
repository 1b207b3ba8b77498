//! Patches: how every proposal is stored, and applied back strictly.
//!
//! A version is stored as its parent plus a unified diff. Users of other
//! evolvers complain about diffs that silently fail to apply; here a hunk
//! whose context or removed lines do not match the parent exactly, at exactly
//! the stated line, is an error — never skipped, never fuzzily relocated.
//! [`validate`] adds the checks a child must pass before evaluation.

use std::collections::BTreeMap;

use similar::TextDiff;

use crate::python;
use crate::tree::{CodeTree, FilePolicy};

/// Why a patch could not be made or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// A changed file is not UTF-8 text, so it cannot be expressed as a unified diff.
    #[error("{path} is not UTF-8 text; binary files cannot be patched")]
    NotText { path: String },
    /// The patch text is malformed.
    #[error("malformed patch at line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    /// A hunk does not match the parent.
    #[error("hunk {hunk} of {path} does not apply at line {at}: {reason}")]
    Mismatch {
        path: String,
        hunk: usize,
        at: usize,
        reason: String,
    },
    /// The patch modifies or deletes a file the parent lacks, or adds one it has.
    #[error("{path}: {reason}")]
    WrongFile { path: String, reason: String },
}

/// Why a proposed child is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The patch does not apply.
    #[error("patch does not apply: {0}")]
    Patch(#[from] PatchError),
    /// A changed Python file does not parse.
    #[error("{path} does not parse: {reason}")]
    Syntax { path: String, reason: String },
    /// A protected file changed.
    #[error("protected file {path} changed")]
    Protected { path: String },
    /// The patch changes nothing.
    #[error("the patch changes nothing")]
    Empty,
}

const DEV_NULL: &str = "/dev/null";
const NO_NEWLINE: &str = "\\ No newline at end of file";

/// The unified diff (3 lines of context) that turns `parent` into `child`,
/// file by file in path order, with `a/` and `b/` prefixes and `/dev/null`
/// for added and deleted files. Empty when the trees are equal.
pub fn diff(parent: &CodeTree, child: &CodeTree) -> Result<String, PatchError> {
    let mut out = String::new();
    for path in parent.changed_paths(child) {
        let old = file_text(parent, &path)?;
        let new = file_text(child, &path)?;
        let old_header = if old.is_some() {
            format!("a/{path}")
        } else {
            DEV_NULL.to_string()
        };
        let new_header = if new.is_some() {
            format!("b/{path}")
        } else {
            DEV_NULL.to_string()
        };
        let old_text = old.unwrap_or("");
        let new_text = new.unwrap_or("");
        let text_diff = TextDiff::from_lines(old_text, new_text);
        let mut unified = text_diff.unified_diff();
        unified.context_radius(3).header(&old_header, &new_header);
        let rendered = unified.to_string();
        if rendered.is_empty() {
            // Only possible for an empty file added or deleted: say so explicitly.
            out.push_str(&format!("--- {old_header}\n+++ {new_header}\n"));
        } else {
            out.push_str(&rendered);
            if !rendered.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    Ok(out)
}

fn file_text<'t>(tree: &'t CodeTree, path: &str) -> Result<Option<&'t str>, PatchError> {
    match tree.get(path) {
        None => Ok(None),
        Some(bytes) => std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| PatchError::NotText {
                path: path.to_string(),
            }),
    }
}

#[derive(Debug, Default)]
struct Hunk {
    old_start: usize,
    old_len: usize,
    /// (' ' | '-' | '+', line with its terminator).
    lines: Vec<(char, String)>,
}

#[derive(Debug)]
struct FilePatch {
    old_path: Option<String>,
    new_path: Option<String>,
    hunks: Vec<Hunk>,
}

fn strip_prefix_path(header: &str) -> Option<String> {
    let name = header
        .split('\t')
        .next()
        .unwrap_or(header)
        .trim_end_matches('\r');
    if name == DEV_NULL {
        return None;
    }
    Some(
        name.strip_prefix("a/")
            .or_else(|| name.strip_prefix("b/"))
            .unwrap_or(name)
            .to_string(),
    )
}

fn parse_range(text: &str, line: usize) -> Result<(usize, usize), PatchError> {
    let malformed = || PatchError::Malformed {
        line,
        reason: format!("bad hunk range `{text}`"),
    };
    let (start, len) = match text.split_once(',') {
        Some((start, len)) => (start, len),
        None => (text, "1"),
    };
    Ok((
        start.parse().map_err(|_| malformed())?,
        len.parse().map_err(|_| malformed())?,
    ))
}

fn parse_patch(patch: &str) -> Result<Vec<FilePatch>, PatchError> {
    let lines: Vec<&str> = patch.split_inclusive('\n').collect();
    let mut files: Vec<FilePatch> = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        let number = index + 1;
        if let Some(old_header) = line.strip_prefix("--- ") {
            let new_header = lines
                .get(index + 1)
                .and_then(|next| next.strip_prefix("+++ "))
                .ok_or_else(|| PatchError::Malformed {
                    line: number,
                    reason: "`---` not followed by `+++`".into(),
                })?;
            files.push(FilePatch {
                old_path: strip_prefix_path(old_header.trim_end_matches('\n')),
                new_path: strip_prefix_path(new_header.trim_end_matches('\n')),
                hunks: Vec::new(),
            });
            index += 2;
            continue;
        }
        if let Some(header) = line.strip_prefix("@@ ") {
            let file = files.last_mut().ok_or_else(|| PatchError::Malformed {
                line: number,
                reason: "hunk before any file header".into(),
            })?;
            let ranges = header.split(" @@").next().unwrap_or("");
            let mut parts = ranges.split_whitespace();
            let (Some(old), Some(new)) = (parts.next(), parts.next()) else {
                return Err(PatchError::Malformed {
                    line: number,
                    reason: "hunk header without ranges".into(),
                });
            };
            let (Some(old), Some(new)) = (old.strip_prefix('-'), new.strip_prefix('+')) else {
                return Err(PatchError::Malformed {
                    line: number,
                    reason: "hunk ranges must be `-a,b +c,d`".into(),
                });
            };
            let (old_start, old_len) = parse_range(old, number)?;
            let (_, new_len) = parse_range(new, number)?;
            let mut hunk = Hunk {
                old_start,
                old_len,
                lines: Vec::new(),
            };
            index += 1;
            let (mut seen_old, mut seen_new) = (0, 0);
            while (seen_old < old_len || seen_new < new_len) && index < lines.len() {
                let body = lines[index];
                let (tag, content) = match body.chars().next() {
                    Some(tag @ (' ' | '-' | '+')) => (tag, &body[1..]),
                    // Some tools drop the space of an empty context line.
                    Some('\n') => (' ', body),
                    _ => {
                        return Err(PatchError::Malformed {
                            line: index + 1,
                            reason: format!(
                                "hunk ends early: expected {old_len} old and {new_len} new lines"
                            ),
                        });
                    }
                };
                match tag {
                    ' ' => {
                        seen_old += 1;
                        seen_new += 1;
                    }
                    '-' => seen_old += 1,
                    _ => seen_new += 1,
                }
                hunk.lines.push((tag, content.to_string()));
                index += 1;
                if lines
                    .get(index)
                    .is_some_and(|next| next.trim_end_matches(['\n', '\r']) == NO_NEWLINE)
                {
                    if let Some((_, last)) = hunk.lines.last_mut()
                        && let Some(stripped) = last.strip_suffix('\n')
                    {
                        *last = stripped.to_string();
                    }
                    index += 1;
                }
            }
            if seen_old != old_len || seen_new != new_len {
                return Err(PatchError::Malformed {
                    line: number,
                    reason: "hunk shorter than its header says".into(),
                });
            }
            file.hunks.push(hunk);
            continue;
        }
        // Anything else between files (`diff --git`, `index ...`) is ignored.
        index += 1;
    }
    Ok(files)
}

/// Applies a unified diff to `parent` strictly: every hunk must match at its stated line.
pub fn apply(parent: &CodeTree, patch: &str) -> Result<CodeTree, PatchError> {
    let mut child = parent.clone();
    for file in parse_patch(patch)? {
        match (&file.old_path, &file.new_path) {
            (None, None) => {
                return Err(PatchError::Malformed {
                    line: 0,
                    reason: "both sides are /dev/null".into(),
                });
            }
            (None, Some(path)) => {
                if parent.get(path).is_some() {
                    return Err(PatchError::WrongFile {
                        path: path.clone(),
                        reason: "patch adds a file that exists".into(),
                    });
                }
                let text = apply_hunks(path, "", &file.hunks)?;
                child.insert(path.clone(), text.into_bytes());
            }
            (Some(path), new_path) => {
                let old = file_text(parent, path)?.ok_or_else(|| PatchError::WrongFile {
                    path: path.clone(),
                    reason: "patch changes a file the parent lacks".into(),
                })?;
                let text = apply_hunks(path, old, &file.hunks)?;
                match new_path {
                    None => {
                        if !text.is_empty() {
                            return Err(PatchError::Mismatch {
                                path: path.clone(),
                                hunk: file.hunks.len(),
                                at: 1,
                                reason: "deletion does not remove the whole file".into(),
                            });
                        }
                        child.0.remove(path);
                    }
                    Some(new_path) => {
                        if new_path != path {
                            child.0.remove(path);
                        }
                        child.insert(new_path.clone(), text.into_bytes());
                    }
                }
            }
        }
    }
    Ok(child)
}

fn apply_hunks(path: &str, old: &str, hunks: &[Hunk]) -> Result<String, PatchError> {
    let old_lines: Vec<&str> = old.split_inclusive('\n').collect();
    let mut out = String::with_capacity(old.len());
    let mut cursor = 0usize;
    for (number, hunk) in hunks.iter().enumerate() {
        let hunk_number = number + 1;
        // An empty old range names the line *after which* the hunk inserts.
        let start = if hunk.old_len == 0 {
            hunk.old_start
        } else {
            hunk.old_start.saturating_sub(1)
        };
        let mismatch = |at: usize, reason: String| PatchError::Mismatch {
            path: path.to_string(),
            hunk: hunk_number,
            at,
            reason,
        };
        if start < cursor {
            return Err(mismatch(
                start + 1,
                "hunks overlap or are out of order".into(),
            ));
        }
        if start > old_lines.len() {
            return Err(mismatch(
                start + 1,
                format!("file has only {} lines", old_lines.len()),
            ));
        }
        out.extend(old_lines[cursor..start].iter().copied());
        let mut position = start;
        for (tag, content) in &hunk.lines {
            match tag {
                ' ' | '-' => {
                    let actual = old_lines.get(position).copied();
                    if actual != Some(content.as_str()) {
                        return Err(mismatch(
                            position + 1,
                            format!(
                                "expected {:?}, found {:?}",
                                content,
                                actual.unwrap_or("<end of file>")
                            ),
                        ));
                    }
                    if *tag == ' ' {
                        out.push_str(content);
                    }
                    position += 1;
                }
                _ => out.push_str(content),
            }
        }
        cursor = position;
    }
    out.extend(old_lines[cursor..].iter().copied());
    Ok(out)
}

/// Applies `patch` to `parent` and checks the child: it changes something, no
/// protected file changed, and every changed `.py` file parses (tree-sitter).
/// Returns the child. (`python3 -m py_compile` is left to the caller's sandbox.)
pub fn validate(
    parent: &CodeTree,
    patch: &str,
    policy: &FilePolicy,
) -> Result<CodeTree, ValidationError> {
    let child = apply(parent, patch)?;
    check_child(parent, &child, policy)?;
    Ok(child)
}

/// The checks of [`validate`] on an already materialized child.
pub fn check_child(
    parent: &CodeTree,
    child: &CodeTree,
    policy: &FilePolicy,
) -> Result<(), ValidationError> {
    let changed = parent.changed_paths(child);
    if changed.is_empty() {
        return Err(ValidationError::Empty);
    }
    let mut problems: BTreeMap<String, String> = BTreeMap::new();
    for path in &changed {
        if policy.is_protected(path) {
            return Err(ValidationError::Protected { path: path.clone() });
        }
        if !path.ends_with(".py") {
            continue;
        }
        let Some(bytes) = child.get(path) else {
            continue;
        };
        let Ok(source) = std::str::from_utf8(bytes) else {
            problems.insert(path.clone(), "not UTF-8".into());
            continue;
        };
        if let Err(error) = python::parse_strict(source) {
            problems.insert(path.clone(), error.to_string());
        }
    }
    match problems.into_iter().next() {
        Some((path, reason)) => Err(ValidationError::Syntax { path, reason }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> CodeTree {
        CodeTree::from_texts(files.iter().copied())
    }

    #[test]
    fn diff_then_apply_round_trips() {
        let parent = tree(&[
            ("a.py", "def f(x):\n    y = x + 1\n    return y\n"),
            ("keep.txt", "same\n"),
            ("gone.py", "x = 1\n"),
            ("noeol.py", "a = 1\nb = 2"),
        ]);
        let child = tree(&[
            (
                "a.py",
                "def f(x):\n    y = x * 2\n    z = y\n    return z\n",
            ),
            ("keep.txt", "same\n"),
            ("new.py", "print('hi')\n"),
            ("noeol.py", "a = 1\nb = 3"),
        ]);
        let patch = diff(&parent, &child).unwrap();
        assert!(patch.contains("--- a/a.py\n+++ b/a.py\n"), "{patch}");
        assert!(patch.contains("+++ /dev/null"));
        assert!(patch.contains("--- /dev/null"));
        assert!(patch.contains(NO_NEWLINE));
        assert_eq!(apply(&parent, &patch).unwrap(), child);
        assert_eq!(diff(&parent, &parent).unwrap(), "");
        assert_eq!(apply(&parent, "").unwrap(), parent);
    }

    #[test]
    fn round_trip_on_a_long_file_with_distant_hunks() {
        let parent_text: String = (0..200).map(|i| format!("x{i} = {i}\n")).collect();
        let child_text = parent_text
            .replace("x10 = 10\n", "x10 = 11\n")
            .replace("x150 = 150\n", "")
            .replace("x199 = 199\n", "x199 = 199\nextra = 1\n");
        let parent = tree(&[("m.py", &parent_text)]);
        let child = tree(&[("m.py", &child_text)]);
        let patch = diff(&parent, &child).unwrap();
        assert_eq!(patch.matches("@@ -").count(), 3);
        assert_eq!(apply(&parent, &patch).unwrap(), child);
    }

    #[test]
    fn a_hunk_that_does_not_match_is_an_error() {
        let parent = tree(&[("a.py", "a = 1\nb = 2\nc = 3\n")]);
        let child = tree(&[("a.py", "a = 1\nb = 5\nc = 3\n")]);
        let patch = diff(&parent, &child).unwrap();
        let drifted = tree(&[("a.py", "a = 1\nb = 4\nc = 3\n")]);
        let error = apply(&drifted, &patch).unwrap_err();
        assert!(
            matches!(error, PatchError::Mismatch { ref path, hunk: 1, at: 2, .. } if path == "a.py"),
            "{error}"
        );
        // Shifted by one line: a strict patch does not go looking for it.
        let shifted = tree(&[("a.py", "# header\na = 1\nb = 2\nc = 3\n")]);
        assert!(matches!(
            apply(&shifted, &patch),
            Err(PatchError::Mismatch { .. })
        ));
        let missing = tree(&[("other.py", "")]);
        assert!(matches!(
            apply(&missing, &patch),
            Err(PatchError::WrongFile { .. })
        ));
        assert!(matches!(
            apply(&parent, "--- a/a.py\n+++ b/a.py\n@@ -1,2 +1,2 @@\n a = 1\n"),
            Err(PatchError::Malformed { .. })
        ));
    }

    #[test]
    fn binary_files_are_refused() {
        let mut parent = CodeTree::new();
        parent.insert("blob.bin", vec![0xff, 0xfe]);
        let mut child = CodeTree::new();
        child.insert("blob.bin", vec![0xff, 0x00]);
        assert!(matches!(
            diff(&parent, &child),
            Err(PatchError::NotText { .. })
        ));
    }

    #[test]
    fn validate_checks_syntax_protection_and_emptiness() {
        let policy = FilePolicy::new(&["*.py".into()], &["scorer.py".into()]);
        let parent = tree(&[
            ("a.py", "x = 1\n"),
            ("scorer.py", "def score():\n    return 1\n"),
        ]);
        let good = tree(&[
            ("a.py", "x = 2\n"),
            ("scorer.py", "def score():\n    return 1\n"),
        ]);
        let patch = diff(&parent, &good).unwrap();
        assert_eq!(validate(&parent, &patch, &policy).unwrap(), good);
        let broken = tree(&[
            ("a.py", "x = (2\n"),
            ("scorer.py", "def score():\n    return 1\n"),
        ]);
        let patch = diff(&parent, &broken).unwrap();
        assert!(matches!(
            validate(&parent, &patch, &policy),
            Err(ValidationError::Syntax { .. })
        ));
        let gamed = tree(&[
            ("a.py", "x = 1\n"),
            ("scorer.py", "def score():\n    return 100\n"),
        ]);
        let patch = diff(&parent, &gamed).unwrap();
        assert!(matches!(
            validate(&parent, &patch, &policy),
            Err(ValidationError::Protected { .. })
        ));
        assert!(matches!(
            validate(&parent, "", &policy),
            Err(ValidationError::Empty)
        ));
    }
}
