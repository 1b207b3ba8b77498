#!/usr/bin/env python3
"""Trusted, deterministic checker of the Genesis suite (runs outside the sandbox).

Per group (the task input's `group`):
  spec         the answer is {"sections": {name: text}}; score = mean of
               (share of required sections present with >= 40 characters,
                share of domain terms mentioned, share of requirements
                covered by name). Passes at the suite's pass_threshold (0.8).
  deployment   the answer is {"valid": bool, "issues": [code, ...]};
  security     the answer is {"vulnerable": bool, "findings": [{"type": code}]};
               prediction = "has a problem"; score = 0.5 for the right verdict
               + 0.5 x Jaccard(found codes, expected codes) (1 when both empty);
               passes only with the right verdict and exactly the right codes.
  performance  the answer is {"bottleneck": name, "technique": code};
               0.5 each; passes with both right.
"""

import json
import os
import sys


def out(**kw):
    print(json.dumps(kw))
    sys.exit(0)


def jaccard(a, b):
    a, b = set(a), set(b)
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def main():
    task = json.load(open(os.environ["DGM_TASK_INPUT"]))
    exp = json.load(open(os.environ["DGM_TASK_EXPECTED"]))
    raw = open(os.environ["DGM_AGENT_OUTPUT"], encoding="utf-8", errors="replace").read().strip()
    try:
        ans = json.loads(raw.splitlines()[-1]) if raw else None
    except ValueError:
        ans = None
    if not isinstance(ans, dict):
        out(score=0.0, passed=False, category="invalid_output", reason="the answer is not a JSON object")
    group = task["group"]

    if group == "spec":
        sections = ans.get("sections") if isinstance(ans.get("sections"), dict) else {}
        text = " ".join(str(v) for v in sections.values()).lower()
        present = [s for s in exp["sections"] if len(str(sections.get(s, ""))) >= 40]
        terms = [t for t in exp["terms"] if t in text]
        reqs = [r for r in exp["requirements"] if r.lower() in text]
        parts = [len(present) / len(exp["sections"]), len(terms) / len(exp["terms"]),
                 len(reqs) / max(1, len(exp["requirements"]))]
        missing = ([f"section {s}" for s in exp["sections"] if s not in present]
                   + [f"term '{t}'" for t in exp["terms"] if t not in terms]
                   + [f"requirement '{r}'" for r in exp["requirements"] if r not in reqs])
        out(score=sum(parts) / 3, section_coverage=parts[0], term_coverage=parts[1],
            requirement_coverage=parts[2],
            reason=("missing: " + ", ".join(missing[:6])) if missing else None)

    if group in ("deployment", "security"):
        if group == "deployment":
            verdict = ans.get("valid")
            if not isinstance(verdict, bool):
                out(score=0.0, passed=False, category="invalid_output", reason="`valid` must be true or false")
            flagged = not verdict
            found = [str(i) for i in ans.get("issues", []) if isinstance(i, str)]
            want = exp["issues"]
        else:
            verdict = ans.get("vulnerable")
            if not isinstance(verdict, bool):
                out(score=0.0, passed=False, category="invalid_output", reason="`vulnerable` must be true or false")
            flagged = verdict
            found = [str(f.get("type")) for f in ans.get("findings", []) if isinstance(f, dict)]
            want = exp["types"]
        right = flagged == bool(want)
        score = (0.5 + 0.5 * jaccard(found, want)) if right else 0.0
        passed = right and set(found) == set(want)
        reason = None
        if not right:
            reason = f"expected {'a problem' if want else 'no problem'}, got the opposite"
        elif not passed:
            reason = f"expected {sorted(want)}, found {sorted(set(found))}"
        out(score=score, passed=passed, prediction=flagged, reason=reason)

    if group == "performance":
        b = ans.get("bottleneck") == exp["bottleneck"]
        t = ans.get("technique") == exp["technique"]
        reason = None
        if not (b and t):
            reason = f"expected {exp['bottleneck']} / {exp['technique']}, got {ans.get('bottleneck')} / {ans.get('technique')}"
        out(score=0.5 * b + 0.5 * t, passed=b and t, reason=reason)

    out(score=0.0, passed=False, category="invalid_output", reason=f"unknown group {group}")


if __name__ == "__main__":
    main()
