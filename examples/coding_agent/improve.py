"""Entry point `improve`: the agent improves its own code (run by `dgm evolve --proposer self`).

Runs in the sandbox, in a writable copy of the agent's code (the current
directory), with the diagnosis JSON's path as its argument. Whatever it
changes here becomes the child version. The benchmark is not visible.
"""

import json
import os
import sys

import prompts
from coding_agent import log, run_agent


def problem_statement(diagnosis):
    d = diagnosis.get("diagnosis", {})
    analysis = d.get("analysis") or {}
    if analysis.get("problem_statement"):
        return analysis["problem_statement"]
    lines = [d.get("summary", "")]
    for failure in d.get("failures", [])[:3]:
        lines.append("- task %s (%s): %s" % (failure.get("task"), failure.get("category"), failure.get("rationale") or ""))
        lines.append("  " + (failure.get("excerpt") or "")[-500:].replace("\n", "\n  "))
    for attempt in diagnosis.get("lineage", [])[:3]:
        lines.append("- earlier attempt: %s -> %s" % (attempt.get("summary"), attempt.get("outcome")))
    return "\n".join(lines)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DGM_IMPROVE_INPUT", "")
    with open(path) as f:
        diagnosis = json.load(f)
    summary = run_agent(prompts.IMPROVE.format(problem=problem_statement(diagnosis)), os.getcwd())
    first = (summary or "self-improvement").strip().splitlines() or ["self-improvement"]
    log("SUMMARY: " + first[0])


if __name__ == "__main__":
    main()
