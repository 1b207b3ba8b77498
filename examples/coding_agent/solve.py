"""Entry point `solve`: one benchmark task, read from $DGM_TASK_INPUT.

HumanEval ({"task_id", "prompt", "entry_point"}): prints the completed function.
Exercism / Aider Polyglot ({"exercise", "instructions", "files", "solution_files"}):
prints {"files": {name: content}}. Without a reachable model it prints the
unchanged stub, so the task fails cleanly rather than crashing.
"""

import json
import os
import sys
import tempfile

import prompts
from coding_agent import log, run_agent
from llm import LLMUnavailable


def main():
    with open(os.environ["DGM_TASK_INPUT"]) as f:
        task = json.load(f)
    workdir = tempfile.mkdtemp(prefix="agent-")
    if "entry_point" in task:
        path = os.path.join(workdir, "solution.py")
        with open(path, "w") as f:
            f.write(task["prompt"])
        try:
            run_agent(prompts.HUMANEVAL.format(prompt=task["prompt"]), workdir)
        except LLMUnavailable as e:
            log("no model: %s" % e)
        with open(path) as f:
            print(f.read())
        return
    names = task.get("solution_files") or list(task.get("files", {}))
    for name, text in task.get("files", {}).items():
        full = os.path.join(workdir, name)
        os.makedirs(os.path.dirname(full) or workdir, exist_ok=True)
        with open(full, "w") as f:
            f.write(text)
    try:
        run_agent(
            prompts.EXERCISM.format(files=", ".join(names), instructions=task.get("instructions", "")),
            workdir,
        )
    except LLMUnavailable as e:
        log("no model: %s" % e)
    out = {}
    for name in names:
        with open(os.path.join(workdir, name)) as f:
            out[name] = f.read()
    print(json.dumps({"files": out}))


if __name__ == "__main__":
    main()
