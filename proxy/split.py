"""Traffic split: pick one of a route's weighted backends (canaries, blue/green).

Header-based A/B routing needs nothing here: an HTTPRoute rule matching
`x-canary: 1` lists the canary as its only backend, and routing picks it.
"""

import bisect
import itertools
import random
from collections.abc import Sequence

from vm_mesh.policy.model import Backend


class WeightedSplit:
    """Chooses a backend with probability weight / total weight (zero weights never win)."""

    def __init__(self, backends: Sequence[Backend], rng: random.Random | None = None) -> None:
        self.backends = tuple(b for b in backends if b.weight > 0)
        if not self.backends:
            raise ValueError("a split needs at least one backend with a weight above 0")
        self._cumulative = list(itertools.accumulate(b.weight for b in self.backends))
        self._rng = rng or random.Random()

    def choose(self) -> Backend:
        if len(self.backends) == 1:
            return self.backends[0]
        point = self._rng.random() * self._cumulative[-1]
        return self.backends[bisect.bisect_right(self._cumulative, point)]

    def __repr__(self) -> str:
        parts = " ".join(f"{b.service}={b.weight}" for b in self.backends)
        return f"<WeightedSplit {parts}>"
