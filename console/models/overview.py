"""`overview` and `stat`: per proxy and per service golden metrics, from `/v1/stats`.

The console keeps one `SourceStatus` per admin source: whether it answered,
the reason when it did not, and its last stats. Rows of unreachable sources
stay on screen with their reason, so a gone proxy is never silently missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from console.api import ProxyStats, RouteStats


@dataclass(slots=True)
class SourceStatus:
    """What the console knows about one admin source."""

    name: str
    address: str
    reachable: bool | None = None  # None: not polled yet
    reason: str | None = None  # stable reason string when unreachable
    detail: str | None = None
    ready: bool | None = None
    last_ok: float | None = None  # epoch seconds of the last good answer
    stats: ProxyStats | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def succeeded(self, now: float) -> None:
        self.reachable, self.reason, self.detail, self.last_ok = True, None, None, now

    def failed(self, reason: str, detail: str) -> None:
        self.reachable, self.reason, self.detail = False, reason, detail

    @property
    def state(self) -> str:
        """`ready`, `not-ready`, `unreachable` or `pending` (not polled yet)."""
        if self.reachable is None:
            return "pending"
        if not self.reachable:
            return "unreachable"
        return "ready" if self.ready else "not-ready"


@dataclass(frozen=True, slots=True)
class Golden:
    """Rate, success and latency of a set of routes combined."""

    rps: float
    success_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def combine(routes: list[RouteStats] | tuple[RouteStats, ...]) -> Golden:
    """Rates add up; success is weighted by rate; latency quantiles are the worst route's.

    Quantiles of a union cannot be computed from quantiles of the parts: the
    worst one is an upper bound and the honest thing to show.
    """
    rps = sum(r.rps for r in routes)
    weighted = [(r.success_rate, r.rps) for r in routes if r.success_rate is not None]
    weight = sum(w for _, w in weighted)
    success = (sum(s * w for s, w in weighted) / weight) if weight else None
    if success is None and weighted:
        success = min(s for s, _ in weighted)

    def worst(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return max(present) if present else None

    return Golden(
        rps=rps,
        success_rate=success,
        p50_ms=worst([r.p50_ms for r in routes]),
        p95_ms=worst([r.p95_ms for r in routes]),
        p99_ms=worst([r.p99_ms for r in routes]),
    )


@dataclass(frozen=True, slots=True)
class StatRow:
    """One line of `vmesh stat`: a service and all its reachable instances."""

    name: str
    meshed: str  # ready/known instances, as linkerd shows "1/1"
    golden: Golden | None
    tcp_conn: int | None


def stat_rows(statuses: list[SourceStatus]) -> list[StatRow]:
    """Services (by the name the proxy reports, else the source name), sorted by name."""
    groups: dict[str, list[SourceStatus]] = {}
    for status in statuses:
        name = (status.stats.service if status.stats else None) or status.name
        groups.setdefault(name, []).append(status)
    rows = []
    for name, members in sorted(groups.items()):
        ready = sum(1 for m in members if m.state == "ready")
        routes = [r for m in members if m.stats and m.reachable for r in m.stats.inbound]
        tcp = [m.stats.tcp_open for m in members
               if m.stats and m.reachable and m.stats.tcp_open is not None]
        answered = any(m.reachable and m.stats for m in members)
        rows.append(StatRow(
            name=name,
            meshed=f"{ready}/{len(members)}",
            golden=combine(routes) if answered else None,
            tcp_conn=sum(tcp) if tcp else None,
        ))
    return rows
