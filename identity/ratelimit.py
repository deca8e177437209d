"""A token bucket per client, so one host cannot monopolise the CA."""

import threading
import time


class RateLimiter:
    """Allow `rate` requests per second per key with bursts of `burst`."""

    def __init__(self, rate: float = 5.0, burst: int = 20, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            if len(self._buckets) >= self.max_keys and key not in self._buckets:
                self._buckets.clear()  # a flood of distinct keys: forget, never grow unbounded
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
            return allowed
