"""When to renew a leaf and how loudly to complain when renewal keeps failing (pure)."""

import logging
import random

from vm_mesh import defaults


def renewal_time(
    not_before: float,
    not_after: float,
    *,
    fraction: float = defaults.RENEW_AT_FRACTION,
    jitter: float = 0.05,
    rng: random.Random | None = None,
) -> float:
    """The moment to renew: `fraction` of the lifetime, moved earlier by up to `jitter` of it.

    The jitter spreads a fleet's renewals so that hosts started together do not
    all call the CA at the same second.
    """
    lifetime = not_after - not_before
    spread = (rng or random).uniform(0.0, jitter)
    return not_before + lifetime * (fraction - spread)


def expiry_level(now: float, not_before: float, not_after: float) -> int:
    """The log level for "renewal failed": louder the closer the leaf is to expiry."""
    lifetime = max(not_after - not_before, 1e-9)
    left = (not_after - now) / lifetime
    if left <= 0:
        return logging.CRITICAL
    if left <= 0.15:
        return logging.ERROR
    return logging.WARNING


def retry_ceiling(attempt: int, now: float, not_after: float) -> float:
    """The longest wait before retry `attempt` (0 first): growing exponentially from 1 s to
    60 s, and never past a tenth of the time the leaf has left."""
    ceiling = min(60.0, 2.0 ** min(attempt, 6))  # the exponent capped: 2.0 ** 1024 overflows
    time_left = not_after - now
    if time_left > 0:
        ceiling = min(ceiling, max(0.5, time_left / 10))
    return ceiling


def retry_delay(
    attempt: int, now: float, not_after: float, *, rng: random.Random | None = None
) -> float:
    """The wait before retry `attempt`: anywhere up to its ceiling ("full jitter"), so that a
    fleet whose CA comes back does not retry all at the same second."""
    return (rng or random).uniform(0.0, retry_ceiling(attempt, now, not_after))
