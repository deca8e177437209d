"""A token bucket: a few quick actions in a row, then one per interval while they keep coming.

Consul's blocking-query docs ask a client to rate-limit its loop this way (a bucket
with a burst of 2): in the happy case a query waits for nothing, and when answers
churn, the loop degrades into polling at a steady rate instead of a busy loop.
"""


class TokenBucket:
    """`burst` actions at once, refilled at one per `interval_s`; times are monotonic seconds."""

    def __init__(self, interval_s: float, burst: int = 2, now: float = 0.0) -> None:
        self.interval_s = interval_s
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def delay(self, now: float) -> float:
        """Take a token for an action at `now`: the seconds to wait before acting (0 when a
        token was there). The caller must wait that long: the token is spent either way."""
        if self.interval_s <= 0:
            return 0.0
        refilled = self._tokens + max(now - self._stamp, 0.0) / self.interval_s
        self._tokens = min(float(self.burst), refilled) - 1.0
        self._stamp = now
        return 0.0 if self._tokens >= 0 else -self._tokens * self.interval_s

    def take(self, now: float) -> bool:
        """Take a token for an action at `now` if there is one (True); else False, and
        nothing is spent: for an action that is skipped, not delayed (a log line)."""
        if self.interval_s <= 0:
            return True
        refilled = min(float(self.burst), self._tokens + max(now - self._stamp, 0.0)
                       / self.interval_s)
        self._stamp = now
        if refilled < 1.0:
            self._tokens = refilled
            return False
        self._tokens = refilled - 1.0
        return True
