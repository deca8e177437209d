"""Capped exponential backoff, the one rule every retry loop of vmesh waits by."""

_MAX_DOUBLINGS = 256  # 2**256 times any first delay above 1e-70 s is past every cap


def doubled(first: float, cap: float, doublings: int) -> float:
    """`first` doubled `doublings` times, at most `cap`. However long a run of failures
    lasts, the delay stays at the cap (an unbounded exponent overflows a float)."""
    return min(cap, first * 2.0 ** min(max(doublings, 0), _MAX_DOUBLINGS))
