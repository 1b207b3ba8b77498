"""The evolvable heuristic for online bin packing.

`bins` holds the remaining capacity of every bin that still has room for
`item`; return one score per bin. The item goes to the highest-scoring bin
(ties: the lowest index). This seed is First Fit: every bin scores the same,
so the first bin with room wins.
"""


def priority(item: float, bins: list[float]) -> list[float]:
    # EVOLVE-BLOCK-START
    scores = []
    for b in bins:
        score = 1.0
        scores.append(score)
    return scores
    # EVOLVE-BLOCK-END
