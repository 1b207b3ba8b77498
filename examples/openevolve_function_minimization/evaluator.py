"""OpenEvolve-style evaluator: imports the candidate program and scores it.

Unchanged OpenEvolve conventions: `evaluate(program_path) -> dict` with a
`combined_score`, and `evaluate_stage1` for cascade evaluation. dgm runs this
file inside the sandbox (it executes the candidate) from the suite's own copy.
"""
import importlib.util
import math
import random

GLOBAL_MIN_VALUE = -1.704  # approximately, near (-1.704, 0.678)


def _load(program_path):
    spec = importlib.util.spec_from_file_location("program", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _score(program_path, trials):
    program = _load(program_path)
    values = []
    for seed in range(trials):
        random.seed(seed)
        x, y, value = program.run_search()
        real = program.evaluate_function(x, y)
        if not all(math.isfinite(v) for v in (x, y, value)) or abs(real - value) > 1e-6:
            return {"combined_score": 0.0, "error": "reported value does not match f(x, y)"}
        values.append(real)
    mean = sum(values) / len(values)
    # 1.0 at the global minimum, falling off with the distance to it.
    value_score = 1.0 / (1.0 + abs(mean - GLOBAL_MIN_VALUE))
    return {"value_score": value_score, "mean_value": mean, "combined_score": value_score}


def evaluate_stage1(program_path):
    return _score(program_path, trials=2)


def evaluate(program_path):
    return _score(program_path, trials=5)
