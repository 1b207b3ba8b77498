"""Protected entry point: reads the task, dispatches to the rules, prints JSON."""

import json
import os
import sys

import rules


def main():
    with open(os.environ["DGM_TASK_INPUT"]) as f:
        task = json.load(f)
    handler = {
        "spec": rules.write_spec,
        "deployment": rules.check_deployment,
        "security": rules.scan_code,
        "performance": rules.find_bottleneck,
    }.get(task.get("group"))
    if handler is None:
        print(json.dumps({"error": "unknown task group"}))
        sys.exit(1)
    print(json.dumps(handler(task)))


if __name__ == "__main__":
    main()
