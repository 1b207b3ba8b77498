#!/usr/bin/env python3
"""Generates the bin packing instances of this suite, deterministically.

FunSearch's online bin packing distributions:
  * OR:      item sizes uniform integers in [20, 100], bin capacity 150
             (the distribution of the OR-Library "OR3" set);
  * Weibull: sizes from Weibull(scale 45, shape 3), rounded to integers and
             clipped to [1, 100], bin capacity 100.

Every instance has 500 items. The random source is a self-contained
SplitMix64 generator seeded per instance, so the files are identical on any
machine and any Python version. Run `python3 generate.py` to rewrite data/ and
tasks.jsonl; `python3 generate.py --check` verifies the committed files.
"""

import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MASK = (1 << 64) - 1
ITEMS = 500


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def uniform(self):
        """A float in [0, 1) with 53 random bits."""
        return (self.next_u64() >> 11) / float(1 << 53)

    def randint(self, lo, hi):
        """Uniform integer in [lo, hi] (rejection sampling, no modulo bias)."""
        span = hi - lo + 1
        limit = (1 << 64) - ((1 << 64) % span)
        while True:
            x = self.next_u64()
            if x < limit:
                return lo + x % span


def or_instance(seed):
    rng = SplitMix64(seed)
    return {"distribution": "or", "seed": seed, "capacity": 150,
            "items": [rng.randint(20, 100) for _ in range(ITEMS)]}


def weibull_instance(seed):
    rng = SplitMix64(seed)
    items = []
    for _ in range(ITEMS):
        u = rng.uniform()
        x = 45.0 * (-math.log(1.0 - u)) ** (1.0 / 3.0)
        items.append(min(100, max(1, int(round(x)))))
    return {"distribution": "weibull", "seed": seed, "capacity": 100, "items": items}


# split -> list of (task id, distribution, number of instances, first seed)
LAYOUT = {
    "train": [("train-or-0", "or", 4, 1000), ("train-weibull-0", "weibull", 4, 1100),
              ("train-or-1", "or", 4, 1010), ("train-weibull-1", "weibull", 4, 1110),
              ("train-or-2", "or", 4, 1020), ("train-weibull-2", "weibull", 4, 1120)],
    "validation": [("validation-or-0", "or", 4, 2000), ("validation-weibull-0", "weibull", 4, 2100),
                   ("validation-or-1", "or", 4, 2010), ("validation-weibull-1", "weibull", 4, 2110)],
    # 20 OR instances of 500 items (the size of OR3) and 10 Weibull ones.
    "holdout": [("holdout-or-0", "or", 5, 3000), ("holdout-weibull-0", "weibull", 5, 3100),
                ("holdout-or-1", "or", 5, 3010), ("holdout-weibull-1", "weibull", 5, 3110),
                ("holdout-or-2", "or", 5, 3020), ("holdout-or-3", "or", 5, 3030)],
}


def build():
    files = {}
    tasks = []
    for split, entries in LAYOUT.items():
        for task_id, dist, n, seed in entries:
            make = or_instance if dist == "or" else weibull_instance
            doc = {"instances": [make(seed + k) for k in range(n)]}
            rel = f"data/{split}/{task_id}.json"
            files[rel] = json.dumps(doc, separators=(",", ":")) + "\n"
            tasks.append({"id": task_id, "tags": [dist], "split": split, "input_file": rel})
    files["tasks.jsonl"] = "".join(json.dumps(t) + "\n" for t in tasks)
    return files


def main():
    files = build()
    if "--check" in sys.argv:
        bad = [rel for rel, body in files.items()
               if not os.path.exists(os.path.join(HERE, rel))
               or open(os.path.join(HERE, rel)).read() != body]
        if bad:
            print("stale or missing: " + ", ".join(bad))
            sys.exit(1)
        print(f"{len(files)} files up to date")
        return
    for rel, body in files.items():
        path = os.path.join(HERE, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(body)
    print(f"wrote {len(files)} files")


if __name__ == "__main__":
    main()
