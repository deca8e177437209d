"""Failure accrual per endpoint: eject after consecutive failures, back off, then probe.

States: `closed` (in rotation), `open` (ejected until the backoff ends) and
`half-open` (one probe request allowed; its outcome closes or re-opens).
Backoff doubles with each ejection in a row, from `min_s` to `max_s`, with
jitter so a fleet does not probe a recovering instance at the same moment.
"""

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from vm_mesh.backoff import doubled


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Consecutive failures that eject, and the backoff between probes."""

    consecutive_failures: int = 7
    min_s: float = 1.0
    max_s: float = 60.0
    jitter: float = 0.5


class CircuitBreaker:
    """The breaker of one endpoint; pure, the clock and randomness are injected."""

    def __init__(
        self,
        settings: BreakerSettings = BreakerSettings(),
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        self.failures = 0
        self.ejections = 0
        self.state = "closed"
        self.open_until = 0.0
        self._probe_in_flight = False

    def available(self) -> bool:
        """May a request be sent now? In half-open, only one probe at a time."""
        if self.state == "open":
            if self._clock() < self.open_until:
                return False
            self.state = "half-open"
        if self.state == "half-open":
            return not self._probe_in_flight
        return True

    def on_request(self) -> None:
        if self.state == "half-open":
            self._probe_in_flight = True

    def on_success(self) -> None:
        self.failures = 0
        self.ejections = 0
        self.state = "closed"
        self._probe_in_flight = False

    def on_failure(self) -> None:
        self.failures += 1
        if self.state == "open":
            return  # a request sent before the ejection: it does not eject again
        if self.state == "half-open" or self.failures >= self.settings.consecutive_failures:
            self._eject()

    def on_abandoned(self) -> None:
        """The request ended with no outcome (it timed out, or its client left). A probe that
        ends so re-opens the breaker: the instance has not shown that it recovered, and the
        next probe goes after the next backoff (a probe left in flight would shut the
        endpoint out for good)."""
        if self.state == "half-open":
            self._eject()

    def _eject(self) -> None:
        settings = self.settings
        backoff = doubled(settings.min_s, settings.max_s, self.ejections)
        backoff *= 1 - settings.jitter * self._rng.random()
        self.ejections += 1
        self.state = "open"
        self.open_until = self._clock() + backoff
        self._probe_in_flight = False

    def describe(self) -> dict[str, object]:
        """The state as `/v1/endpoints` shows it."""
        left = max(0.0, self.open_until - self._clock()) if self.state == "open" else 0.0
        return {
            "state": self.state,
            "consecutive_failures": self.failures,
            "ejections": self.ejections,
            "reopens_in_s": round(left, 3),
        }
