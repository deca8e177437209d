"""Mirroring decisions: which requests are also copied to a shadow service.

Only the decision lives here. The copy is sent after the primary request was
forwarded and its response is discarded, so a slow or dead shadow never
delays or fails the primary. Requests whose body is unknown or larger than
the replay limit are not mirrored (the body would have to be held back).
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass

from vm_mesh.policy.model import MAX_REPLAY_BODY, Mirror
from vm_mesh.policy.policyset import Source, Sourced


@dataclass(frozen=True, slots=True)
class MirrorTarget:
    """A shadow service and the share of requests it receives."""

    to: str
    percent: float
    source: Source | None = None


class MirrorSampler:
    """Samples requests to a destination service for each of its mirrors independently."""

    def __init__(self, targets: Sequence[MirrorTarget], rng: random.Random | None = None) -> None:
        self.targets = tuple(targets)
        self._rng = rng or random.Random()

    @classmethod
    def from_policy(
        cls, mirrors: Sequence[Sourced[Mirror]], rng: random.Random | None = None
    ) -> "MirrorSampler":
        return cls([MirrorTarget(m.doc.to, m.doc.percent, m.source) for m in mirrors], rng)

    def sample(self, body_size: int | None) -> tuple[MirrorTarget, ...]:
        """The shadows this request is copied to (usually none)."""
        if not self.targets or body_size is None or body_size > MAX_REPLAY_BODY:
            return ()
        return tuple(t for t in self.targets if self._rng.random() * 100 < t.percent)

    def __bool__(self) -> bool:
        return bool(self.targets)
