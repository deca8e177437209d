"""Capped exponential backoff, the one rule every retry loop of vmesh waits by, and its jittered
form for loops that many proxies run at once."""

import random

_MAX_DOUBLINGS = 256  # 2**256 times any first delay above 1e-70 s is past every cap
_SHARED_RNG = random.Random()


def doubled(first: float, cap: float, doublings: int) -> float:
    """`first` doubled `doublings` times, at most `cap`. However long a run of failures
    lasts, the delay stays at the cap (an unbounded exponent overflows a float)."""
    return min(cap, first * 2.0 ** min(max(doublings, 0), _MAX_DOUBLINGS))


def full_jitter(first: float, cap: float, doublings: int,
                rng: random.Random = _SHARED_RNG) -> float:
    """A delay drawn evenly from 0 to `doubled(first, cap, doublings)` ("full jitter", AWS's
    "Exponential Backoff and Jitter"): clients that failed at the same moment (every proxy
    of the mesh when a Consul agent restarts) come back spread over the window instead of in
    lockstep, while the window still doubles up to `cap`."""
    return rng.uniform(0.0, doubled(first, cap, doublings))
