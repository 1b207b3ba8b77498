"""Evaluator for examples/binpack_search.rs: reads one JSON request per line
({"code": "...", "split": "train"}), packs every instance of that split with
the candidate's `priority`, and answers {"excess": mean excess %} or
{"error": "..."}. A dev tool for measuring search quality, not the suite's scorer."""

import json
import math
import os
import sys

DATA = sys.argv[1]


def load(split):
    instances = []
    folder = os.path.join(DATA, split)
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name)) as f:
            instances.extend(json.load(f)["instances"])
    return instances


def pack(priority, capacity, items):
    remaining = []
    for item in items:
        open_ids = [i for i, r in enumerate(remaining) if r >= item]
        chosen = None
        if open_ids:
            scores = priority(float(item), [float(remaining[i]) for i in open_ids])
            if len(scores) != len(open_ids):
                raise ValueError("wrong number of scores")
            best = None
            for i, s in zip(open_ids, scores):
                s = float(s)
                if math.isnan(s):
                    raise ValueError("NaN")
                if best is None or s > best:
                    best, chosen = s, i
        if chosen is None:
            remaining.append(capacity)
            chosen = len(remaining) - 1
        remaining[chosen] -= item
    return len(remaining)


CACHE = {}
for line in sys.stdin:
    request = json.loads(line)
    split = request.get("split", "train")
    if split not in CACHE:
        CACHE[split] = load(split)
    try:
        namespace = {}
        exec(compile(request["code"], "priority.py", "exec"), namespace)
        priority = namespace["priority"]
        total = 0.0
        for t in CACHE[split]:
            l1 = max(1, math.ceil(sum(t["items"]) / t["capacity"]))
            total += 100.0 * (pack(priority, t["capacity"], t["items"]) - l1) / l1
        answer = {"excess": total / len(CACHE[split])}
    except Exception as error:  # noqa: BLE001 - any failure of the candidate is a failed evaluation
        answer = {"error": f"{type(error).__name__}: {error}"}
    print(json.dumps(answer), flush=True)
