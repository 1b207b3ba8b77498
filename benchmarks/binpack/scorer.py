#!/usr/bin/env python3
"""Trusted scorer of the bin packing suite (runs outside the sandbox).

Reads the task's instances ($DGM_TASK_INPUT) and the agent's answer
($DGM_AGENT_OUTPUT: {"assignments": [[bin index per item], ...]} or, for a
single instance, {"assignment": [...]}), checks the packing — every item in
exactly one bin, no bin over capacity — and prints one JSON line:

  score                 5 / (5 + excess_pct): 1.0 at the L1 bound, 0.5 at 5 %
                        excess, strictly decreasing in the excess
  passed                true when every packing is valid
  excess_pct            mean over instances of 100 * (bins - L1) / L1,
                        L1 = ceil(sum(items) / capacity)
  first_fit_excess_pct  the same for First Fit on the same instances
  best_fit_excess_pct   the same for Best Fit on the same instances
  bins, l1_bound        totals over the instances

An invalid packing scores 0 with passed false, category wrong_answer (or
invalid_output when the answer is not the expected JSON).
"""

import bisect
import json
import math
import os
import sys


def l1_bound(capacity, items):
    return max(1, math.ceil(sum(items) / capacity))


def first_fit(capacity, items):
    """First Fit in O(n log n): a max segment tree over the bins' remaining room."""
    size = 1
    while size < len(items):
        size *= 2
    tree = [0] * (2 * size)  # leaves: remaining room of bin i (0 = not opened)
    opened = 0
    for item in items:
        if tree[1] >= item:
            node = 1
            while node < size:  # descend to the leftmost leaf with room
                node = 2 * node if tree[2 * node] >= item else 2 * node + 1
        else:
            node = size + opened
            opened += 1
            tree[node] = capacity
        tree[node] -= item
        node //= 2
        while node:
            tree[node] = max(tree[2 * node], tree[2 * node + 1])
            node //= 2
    return opened


def best_fit(capacity, items):
    """Best Fit: the bin with the least room that fits (ties: lowest index)."""
    rooms = []  # sorted (remaining room, bin index)
    opened = 0
    for item in items:
        k = bisect.bisect_left(rooms, (item, -1))
        if k == len(rooms):
            room, idx = capacity, opened
            opened += 1
        else:
            room, idx = rooms.pop(k)
        if room - item > 0:
            bisect.insort(rooms, (room - item, idx))
    return opened


def excess(bins, l1):
    return 100.0 * (bins - l1) / l1


def emit(obj):
    print(json.dumps(obj))
    sys.exit(0)


def fail(category, reason, extra):
    emit(dict(score=0.0, passed=False, category=category, reason=reason, **extra))


def main():
    with open(os.environ["DGM_TASK_INPUT"]) as f:
        doc = json.load(f)
    instances = doc["instances"] if "instances" in doc else [doc]
    ff = [excess(first_fit(t["capacity"], t["items"]), l1_bound(t["capacity"], t["items"])) for t in instances]
    bf = [excess(best_fit(t["capacity"], t["items"]), l1_bound(t["capacity"], t["items"])) for t in instances]
    base = {
        "first_fit_excess_pct": sum(ff) / len(ff),
        "best_fit_excess_pct": sum(bf) / len(bf),
        "instances": len(instances),
    }

    with open(os.environ["DGM_AGENT_OUTPUT"], "rb") as f:
        raw = f.read().decode("utf-8", "replace")
    lines = [l for l in raw.strip().splitlines() if l.strip().startswith("{")]
    if not lines:
        fail("invalid_output", "the agent printed no JSON answer", base)
    try:
        answer = json.loads(lines[-1])
    except ValueError as e:
        fail("invalid_output", f"the agent's answer is not JSON: {e}", base)
    if not isinstance(answer, dict):
        fail("invalid_output", "the agent's answer is not a JSON object", base)
    if "assignments" in answer:
        assignments = answer["assignments"]
    elif "assignment" in answer and len(instances) == 1:
        assignments = [answer["assignment"]]
    else:
        fail("invalid_output", "the answer has no `assignments` list", base)
    if not isinstance(assignments, list) or len(assignments) != len(instances):
        fail("wrong_answer", f"expected {len(instances)} assignments", base)

    excesses, total_bins, total_l1 = [], 0, 0
    for k, (inst, assign) in enumerate(zip(instances, assignments)):
        cap, items = inst["capacity"], inst["items"]
        if not isinstance(assign, list) or len(assign) != len(items):
            fail("wrong_answer", f"instance {k}: expected one bin index per item ({len(items)})", base)
        loads = {}
        for j, (item, b) in enumerate(zip(items, assign)):
            if isinstance(b, bool) or not isinstance(b, int) or b < 0:
                fail("wrong_answer", f"instance {k}: item {j} has bin {b!r}, not a bin index", base)
            loads[b] = loads.get(b, 0) + item
        over = [(b, l) for b, l in loads.items() if l > cap]
        if over:
            b, l = over[0]
            fail("wrong_answer", f"instance {k}: bin {b} holds {l} > capacity {cap}", base)
        bins, l1 = len(loads), l1_bound(cap, items)
        total_bins += bins
        total_l1 += l1
        excesses.append(excess(bins, l1))
    mean_excess = sum(excesses) / len(excesses)
    emit(dict(score=5.0 / (5.0 + max(0.0, mean_excess)), passed=True, excess_pct=mean_excess,
              bins=total_bins, l1_bound=total_l1, **base))


if __name__ == "__main__":
    main()
