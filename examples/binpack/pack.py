"""Protected harness: packs one instance online with `priority` and prints
the assignment. The trusted scorer (outside the sandbox) checks it.

Input (JSON, path in $DGM_TASK_INPUT or argv[1]):
    {"capacity": 150, "items": [42, 17, ...]}
Output (JSON on stdout):
    {"assignment": [0, 0, 1, ...]}   # bin index per item
"""

import json
import math
import os
import sys

from priority import priority


def pack(capacity, items):
    remaining = []  # remaining capacity per opened bin
    assignment = []
    for item in items:
        open_ids = [i for i, r in enumerate(remaining) if r >= item]
        chosen = None
        if open_ids:
            scores = priority(float(item), [float(remaining[i]) for i in open_ids])
            if len(scores) != len(open_ids):
                raise ValueError(
                    f"priority returned {len(scores)} scores for {len(open_ids)} bins"
                )
            best = None
            for i, s in zip(open_ids, scores):
                s = float(s)
                if math.isnan(s):
                    raise ValueError("priority returned NaN")
                if best is None or s > best:
                    best, chosen = s, i
        if chosen is None:
            remaining.append(capacity)
            chosen = len(remaining) - 1
        remaining[chosen] -= item
        assignment.append(chosen)
    return assignment


def main():
    path = os.environ.get("DGM_TASK_INPUT") or (sys.argv[1] if len(sys.argv) > 1 else None)
    if path is None:
        instance = json.load(sys.stdin)
    else:
        with open(path) as f:
            instance = json.load(f)
    tasks = instance["instances"] if "instances" in instance else [instance]
    out = [pack(t["capacity"], t["items"]) for t in tasks]
    if "instances" in instance:
        print(json.dumps({"assignments": out}))
    else:
        print(json.dumps({"assignment": out[0]}))


if __name__ == "__main__":
    main()
