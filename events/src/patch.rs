//! Unified diffs between two code trees: what a version's `patch` holds.

use crate::agent::Files;

/// A unified diff (per file, `a/` and `b/` prefixes) turning `old` into `new`.
pub fn diff_trees(old: &Files, new: &Files) -> String {
    let mut out = String::new();
    let paths: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for path in paths {
        let before = old
            .get(path)
            .map(|b| String::from_utf8_lossy(b).into_owned());
        let after = new
            .get(path)
            .map(|b| String::from_utf8_lossy(b).into_owned());
        if before == after {
            continue;
        }
        let a = before.unwrap_or_default();
        let b = after.unwrap_or_default();
        let diff = similar::TextDiff::from_lines(&a, &b);
        out.push_str(
            &diff
                .unified_diff()
                .context_radius(3)
                .header(&format!("a/{path}"), &format!("b/{path}"))
                .to_string(),
        );
    }
    out
}
