"""`edges`: who talks to whom, with identities and whether mTLS was on (linkerd viz edges)."""

from __future__ import annotations

from dataclasses import dataclass

from console.api import TapEvent, short_identity
from console.models.dedup import SeenOnce

MAX_EDGES = 1_000


@dataclass(slots=True)
class Edge:
    """Traffic from one client to one destination service, as the proxies saw it."""

    src: str
    dst: str
    client_id: str | None
    server_id: str | None
    requests: int = 0
    secured: int = 0
    last_ts: float = 0.0

    @property
    def tls(self) -> str:
        """`yes` when every request was mTLS, `no` when none, `partial` otherwise."""
        if self.secured == self.requests:
            return "yes"
        return "no" if self.secured == 0 else "partial"


class EdgeTable:
    """Edges keyed by (source, destination), built from tap events."""

    def __init__(self, max_edges: int = MAX_EDGES) -> None:
        self._edges: dict[tuple[str, str], Edge] = {}
        self._dedup = SeenOnce()
        self.max_edges = max_edges

    def add(self, event: TapEvent) -> None:
        if not self._dedup.counts(event):
            return
        src, dst = event.client_name, event.destination_name
        key = (src, dst)
        edge = self._edges.get(key)
        if edge is None:
            if len(self._edges) >= self.max_edges:
                oldest = min(self._edges.values(), key=lambda e: e.last_ts)
                del self._edges[(oldest.src, oldest.dst)]
            edge = self._edges[key] = Edge(src, dst, event.src_id, event.dst_id)
        edge.requests += 1
        edge.secured += event.tls
        edge.client_id = event.src_id or edge.client_id
        edge.server_id = event.dst_id or edge.server_id
        edge.last_ts = max(edge.last_ts, event.ts)

    def rows(self) -> list[Edge]:
        """Edges ordered by source, then destination."""
        return sorted(self._edges.values(), key=lambda e: (e.src, e.dst))


def identity_label(spiffe_id: str | None) -> str:
    return short_identity(spiffe_id) or "-"
