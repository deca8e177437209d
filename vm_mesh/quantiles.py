"""Percentiles of weighted samples, where each value stands for `weight` requests.

A latency sample is weighted when it was thinned: a proxy keeps at most a
fixed number of latencies per second, and the console merges the sketches of
several instances, each of which stands for its own number of requests.
"""

from collections.abc import Sequence

Weighted = Sequence[tuple[float, float]]  # (value, weight) pairs, sorted by value


def weighted_percentile(weighted: Weighted, fraction: float) -> float | None:
    """Nearest-rank percentile by weight: the first value whose cumulative weight reaches
    `fraction` of the total (the plain nearest rank when every weight is 1); None if empty."""
    if not weighted:
        return None
    goal = fraction * sum(weight for _, weight in weighted)
    seen = 0.0
    for value, weight in weighted:
        seen += weight
        if seen >= goal:
            return value
    return weighted[-1][0]
