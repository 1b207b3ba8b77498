//! Per-test results from test runners: JUnit XML (pytest's `--junitxml`, and
//! any runner that writes it) and libtest's plain text (`cargo test`, whose
//! JUnit output is still unstable).

use crate::report::{TestCaseResult, truncate};

/// Parse JUnit XML. `None` when `xml` holds no `<testsuite>`/`<testcase>`.
pub fn parse_junit(xml: &str) -> Result<Vec<TestCaseResult>, String> {
    let start = xml.find('<').ok_or("no XML in the output")?;
    let doc =
        roxmltree::Document::parse(&xml[start..]).map_err(|e| format!("invalid JUnit XML: {e}"))?;
    let mut out = Vec::new();
    for case in doc.descendants().filter(|n| n.has_tag_name("testcase")) {
        let name = match (case.attribute("classname"), case.attribute("name")) {
            (Some(c), Some(n)) if !c.is_empty() => format!("{c}::{n}"),
            (_, Some(n)) => n.to_string(),
            _ => "unnamed".to_string(),
        };
        let mut passed = true;
        let mut skipped = false;
        let mut message = None;
        for child in case.children().filter(|c| c.is_element()) {
            match child.tag_name().name() {
                "failure" | "error" => {
                    passed = false;
                    let m = child
                        .attribute("message")
                        .map(str::to_string)
                        .or_else(|| child.text().map(str::to_string))
                        .unwrap_or_else(|| child.tag_name().name().to_string());
                    message = Some(truncate(m.trim(), 300));
                }
                "skipped" => skipped = true,
                _ => {}
            }
        }
        out.push(TestCaseResult {
            name,
            passed: passed && !skipped,
            skipped: skipped && passed,
            message,
        });
    }
    if out.is_empty() && !doc.descendants().any(|n| n.has_tag_name("testsuite")) {
        return Err("no <testsuite> in the JUnit XML".into());
    }
    Ok(out)
}

/// Parse libtest output lines `test NAME ... ok|FAILED|ignored`.
pub fn parse_libtest(text: &str) -> Vec<TestCaseResult> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("test ") else {
            continue;
        };
        let Some((name, verdict)) = rest.rsplit_once(" ... ") else {
            continue;
        };
        let verdict = verdict.trim();
        let (passed, skipped) = match verdict {
            "ok" => (true, false),
            "FAILED" => (false, false),
            v if v.starts_with("ignored") => (false, true),
            _ => continue,
        };
        out.push(TestCaseResult {
            name: name.trim().to_string(),
            passed,
            skipped,
            message: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_counts_failures_errors_and_skips() {
        let xml = r#"<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="4">
<testcase classname="t" name="a"/><testcase classname="t" name="b"><failure message="assert 1 == 2">x</failure></testcase>
<testcase classname="t" name="c"><error message="boom"/></testcase><testcase classname="t" name="d"><skipped/></testcase>
</testsuite></testsuites>"#;
        let r = parse_junit(xml).unwrap();
        assert_eq!(r.len(), 4);
        assert!(r[0].passed && !r[1].passed && !r[2].passed && r[3].skipped);
        assert_eq!(r[1].message.as_deref(), Some("assert 1 == 2"));
        assert!(parse_junit("garbage").is_err());
    }

    #[test]
    fn libtest_lines() {
        let r = parse_libtest(
            "running 3 tests\ntest a::b ... ok\ntest c ... FAILED\ntest d ... ignored, slow\n",
        );
        assert_eq!(r.len(), 3);
        assert!(r[0].passed && !r[1].passed && r[2].skipped);
    }
}
