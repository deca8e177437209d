"""Listeners at or near their connection cap (`[max_connections]`), from `/v1/stats`.

A listener at its cap accepts nothing: new connections wait in the kernel's backlog until
one closes. One at `NEAR_CAP` of its cap or more is about to. `vmesh stat`, the overview
and `vmesh check` name them with the proxy they belong to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from console.api import ListenerLoad

NEAR_CAP = 0.8  # of a listener's cap: above it, a warning


@dataclass(frozen=True, slots=True)
class CrowdedListener:
    """A listener of the proxy `proxy` that is full (`saturated`) or nearly."""

    proxy: str
    listener: str
    open: int
    max: int
    saturated: bool

    @property
    def state(self) -> str:
        """`saturated` (at its cap, accepting nothing) or `near_cap`."""
        return "saturated" if self.saturated else "near_cap"

    @property
    def summary(self) -> str:
        """`outbound 3/3 full`, `inbound 850/1000 85%`."""
        load = "full" if self.saturated else f"{self.open * 100 // self.max}%"
        return f"{self.listener} {self.open}/{self.max} {load}"

    @property
    def message(self) -> str:
        """What it means, in a line: `full: 3/3 connections, accepting none; ...`."""
        if self.saturated:
            return (f"full: {self.open}/{self.max} connections, accepting none; new ones wait "
                    "in the backlog")
        return f"{self.open}/{self.max} connections, {self.open * 100 // self.max}% of its cap"

    @property
    def reason(self) -> str:
        """`listeners.saturated` or `listeners.near_cap`, as `vmesh check` reports it."""
        return f"listeners.{self.state}"

    def to_json(self) -> dict[str, object]:
        return {"proxy": self.proxy, "listener": self.listener, "open": self.open,
                "max": self.max, "state": self.state}


def crowded(proxy: str, listeners: Iterable[ListenerLoad]) -> list[CrowdedListener]:
    """The listeners of `proxy` that are full or above `NEAR_CAP` of their cap, the full ones
    first."""
    found = [
        CrowdedListener(proxy, load.name, load.open, load.max,
                        load.saturated or load.open >= load.max)
        for load in listeners
        if load.max > 0 and (load.saturated or load.open >= NEAR_CAP * load.max)
    ]
    return sorted(found, key=lambda c: (not c.saturated, -c.open / c.max, c.listener))


def config_key(listener: str) -> str:
    """The `[max_connections]` key that sets the cap of `listener`."""
    if listener.startswith("tcp:"):
        return "tcp"
    return "admin" if listener.startswith("admin") else listener
