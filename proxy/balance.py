"""Per-request load balancing: power of two choices over peak-EWMA latency (as Linkerd).

Each endpoint keeps an exponentially weighted moving average of its response
latency that jumps up at once on a slow response (peak) and decays slowly;
its cost is that average times (outstanding requests + 1). The balancer
picks two available endpoints at random and sends to the one with the lower
cost per unit of weight (the instance's `weight` from discovery, 100 by
default), so under load an instance of weight 300 carries three times the
outstanding requests of one of weight 100. Weight 0 drains an instance: it is
picked only when no weighted instance is available.

As in Finagle and tower, the average also decays towards zero while nothing is
observed: an endpoint that was slow once, or a new one still at the default
estimate, becomes the cheaper choice again after a while and is tried, instead
of being starved for good by endpoints that keep answering fast.

Two endpoints neither of which has answered yet differ in their default
estimates only by when the proxy learned of them (each decays from then): they
are compared by outstanding requests per unit of weight alone, and equals are
drawn at random, so that a freshly started proxy, and every proxy of a fleet,
does not send its first requests all to the instance discovery listed first.

An opaque TCP connection is load on its endpoint for as long as it is open (one
outstanding request), and its connect and handshake time is its latency sample.
"""

import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

DEFAULT_RTT_MS = 30.0  # the cost of an endpoint before it has answered once
DECAY_S = 10.0


class PeakEwma:
    """Peak-sensitive EWMA of latency in milliseconds, decaying with time.

    `value` is the estimate as of the last observation or cost reading; reading
    `cost` first decays it to now (an observation of zero, as Finagle does).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.value = DEFAULT_RTT_MS
        self._stamp = clock()
        self.pending = 0
        self.sampled = False  # an observation came: `value` is no longer the default

    def observe(self, rtt_ms: float) -> None:
        now = self._clock()
        self.sampled = True
        if rtt_ms > self.value:
            self.value = rtt_ms
        else:
            weight = math.exp(-(now - self._stamp) / DECAY_S)
            self.value = self.value * weight + rtt_ms * (1 - weight)
        self._stamp = now

    @property
    def cost(self) -> float:
        """The estimate decayed to now, times (outstanding requests + 1)."""
        now = self._clock()
        self.value *= math.exp(-(now - self._stamp) / DECAY_S)
        self._stamp = now
        return self.value * (self.pending + 1)


class Balanced(Protocol):
    """What the balancer needs of an endpoint."""

    ewma: PeakEwma
    weight: int

    def available(self) -> bool: ...


E = TypeVar("E", bound=Balanced)


def pick(endpoints: Sequence[E], rng: random.Random) -> E | None:
    """P2C: of two random available endpoints the cheaper per unit of weight (of two that
    have not answered yet, the less loaded; of equals, either at random), drained ones
    (weight 0) only when no other is available; None when none is available."""
    candidates = [e for e in endpoints if e.weight and e.available()]
    if not candidates:
        candidates = [e for e in endpoints if e.available()]
        if not candidates:
            return None
    if len(candidates) == 1:
        return candidates[0]
    count = len(candidates)
    i = int(rng.random() * count)
    j = int(rng.random() * (count - 1))
    first, second = candidates[i], candidates[j + (j >= i)]  # two distinct, uniformly
    ours, theirs = first.ewma, second.ewma
    if ours.sampled or theirs.sampled:
        if ours.cost * second.weight <= theirs.cost * first.weight:
            return first
        return second
    # neither answered yet: their default estimates differ only in age, which would always
    # favour the one created first; only their load tells them apart, equals go either way
    if (ours.pending + 1) * second.weight <= (theirs.pending + 1) * first.weight:
        return first
    return second
