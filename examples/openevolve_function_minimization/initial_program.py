# EVOLVE-BLOCK-START
"""Function minimization example (after OpenEvolve's example of the same name):
find the global minimum of f(x, y) = sin(x) * cos(y) + sin(x * y) + (x^2 + y^2) / 20
with a random search. The evolution rewrites the code between the markers."""
import random


def search_algorithm(iterations=1000, bounds=(-5, 5)):
    best_x = random.uniform(bounds[0], bounds[1])
    best_y = random.uniform(bounds[0], bounds[1])
    best_value = evaluate_function(best_x, best_y)
    for _ in range(iterations):
        x = random.uniform(bounds[0], bounds[1])
        y = random.uniform(bounds[0], bounds[1])
        value = evaluate_function(x, y)
        if value < best_value:
            best_value, best_x, best_y = value, x, y
    return best_x, best_y, best_value


# EVOLVE-BLOCK-END


# This part is fixed: the evaluator calls it.
def evaluate_function(x, y):
    import math
    return math.sin(x) * math.cos(y) + math.sin(x * y) + (x ** 2 + y ** 2) / 20


def run_search():
    return search_algorithm()


if __name__ == "__main__":
    x, y, value = run_search()
    print(f"Found minimum at ({x}, {y}) with value {value}")
