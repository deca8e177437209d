"""`overview` and `stat`: per proxy and per service golden metrics, from `/v1/stats`.

The console keeps one `SourceStatus` per admin source: whether it answered,
the reason when it did not, and its last stats. Rows of unreachable sources
stay on screen with their reason, so a gone proxy is never silently missing.
A service is the name a proxy reports (else its source's name); the overview
shows each service with its instances under it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from console.api import ProxyStats, RouteStats
from console.models.listeners import CrowdedListener, crowded
from vm_mesh.quantiles import weighted_percentile


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
    """Rate, success, latency and requests in flight of a set of routes combined."""

    rps: float
    success_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    in_flight: int


def merged_percentile(
    parts: list[tuple[tuple[float, ...], int]], fraction: float
) -> float | None:
    """The `fraction` percentile of several rows' requests together, from their sketches
    (each value an equal share of its row's `requests`), nearest rank by weight."""
    weighted = sorted(
        (value, requests / len(sketch)) for sketch, requests in parts for value in sketch
    )
    return weighted_percentile(weighted, fraction)


def combine(routes: list[RouteStats] | tuple[RouteStats, ...]) -> Golden:
    """Rates and requests in flight add up; success is weighted by rate; latency percentiles
    are those of all the routes' requests together, merged from their sketches by request
    count.

    Quantiles of a union cannot be computed from quantiles of the parts: when a
    route has no sketch (a proxy of an older version), the worst route's is shown,
    an upper bound.
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

    answered = [r for r in routes if r.requests]
    p50: float | None
    p95: float | None
    p99: float | None
    if len(answered) > 1 and all(r.latency_sketch_ms for r in answered):
        parts = [(r.latency_sketch_ms, r.requests) for r in answered]
        p50, p95, p99 = (merged_percentile(parts, f) for f in (0.50, 0.95, 0.99))
    else:
        p50, p95, p99 = (worst([getattr(r, name) for r in routes])
                         for name in ("p50_ms", "p95_ms", "p99_ms"))
    return Golden(rps=rps, success_rate=success, p50_ms=p50, p95_ms=p95, p99_ms=p99,
                  in_flight=sum(r.in_flight for r in routes))


@dataclass(frozen=True, slots=True)
class StatRow:
    """One line of `vmesh stat`: a service and all its reachable instances."""

    name: str
    meshed: str  # ready/known instances, as linkerd shows "1/1"
    golden: Golden | None
    tcp_conn: int | None
    # its proxies' listeners full or near their cap; None: no instance reported listeners
    crowded: tuple[CrowdedListener, ...] | None = None


def by_service(statuses: list[SourceStatus]) -> list[tuple[str, list[SourceStatus]]]:
    """(service, its instances by name), services sorted by name."""
    groups: dict[str, list[SourceStatus]] = {}
    for status in statuses:
        name = (status.stats.service if status.stats else None) or status.name
        groups.setdefault(name, []).append(status)
    return [(name, sorted(members, key=lambda m: m.name))
            for name, members in sorted(groups.items())]


def stat_rows(statuses: list[SourceStatus]) -> list[StatRow]:
    """Services (by the name the proxy reports, else the source name), sorted by name."""
    rows = []
    for name, members in by_service(statuses):
        ready = sum(1 for m in members if m.state == "ready")
        routes = [r for m in members if m.stats and m.reachable for r in m.stats.inbound]
        tcp = [m.stats.tcp_open for m in members
               if m.stats and m.reachable and m.stats.tcp_open is not None]
        answered = any(m.reachable and m.stats for m in members)
        reported = any(m.reachable and m.stats and m.stats.listeners for m in members)
        rows.append(StatRow(
            name=name,
            meshed=f"{ready}/{len(members)}",
            golden=combine(routes) if answered else None,
            tcp_conn=sum(tcp) if tcp else None,
            crowded=tuple(crowded_listeners(members)) if reported else None,
        ))
    return rows


def crowded_listeners(statuses: list[SourceStatus]) -> list[CrowdedListener]:
    """The listeners full or near their cap of every proxy that answers, by proxy."""
    return [c for s in sorted(statuses, key=lambda s: s.name) if s.reachable and s.stats
            for c in crowded(s.name, s.stats.listeners)]


@dataclass(frozen=True, slots=True)
class OverviewRow:
    """One line of the overview: a service (its instances combined) or one instance.

    A service whose only instance carries its name is one line, the instance's.
    """

    key: str
    name: str
    service: bool  # a service line; False: an instance line
    nested: bool  # an instance listed under its service line
    state: str  # ready | not-ready | unreachable | pending; services: `1/2 ready`
    health: str  # ok | degraded | down | pending: how worried to be (the colour)
    golden: Golden | None
    version: str | None
    last_ok: float | None
    address: str


def _instance_health(status: SourceStatus) -> str:
    return {"ready": "ok", "not-ready": "degraded", "unreachable": "down"}.get(status.state,
                                                                           "pending")


def _instance_row(status: SourceStatus, nested: bool) -> OverviewRow:
    return OverviewRow(
        key=f"instance|{status.name}", name=status.name, service=False, nested=nested,
        state=status.state, health=_instance_health(status),
        golden=combine(status.stats.inbound) if status.stats and status.reachable else None,
        version=status.stats.version if status.stats else None,
        last_ok=status.last_ok, address=status.address)


def overview_rows(statuses: list[SourceStatus]) -> list[OverviewRow]:
    """Each service, then its instances; the service line combines the instances that answer.

    A service's state counts its ready instances (`1/2 ready`); its versions
    are all those its instances run (a rollout in progress shows two).
    """
    rows: list[OverviewRow] = []
    for service, members in by_service(statuses):
        if len(members) == 1 and members[0].name == service:
            rows.append(_instance_row(members[0], nested=False))
            continue
        ready = sum(1 for m in members if m.state == "ready")
        answered = [m for m in members if m.reachable and m.stats]
        versions = sorted({m.stats.version for m in answered if m.stats and m.stats.version})
        seen = [m.last_ok for m in members if m.last_ok is not None]
        if all(m.state == "pending" for m in members):
            health = "pending"
        else:
            health = "ok" if ready == len(members) else "down" if not ready else "degraded"
        rows.append(OverviewRow(
            key=f"service|{service}", name=service, service=True, nested=False,
            state=f"{ready}/{len(members)} ready", health=health,
            golden=combine([r for m in answered if m.stats for r in m.stats.inbound])
            if answered else None,
            version=",".join(versions) or None, last_ok=max(seen) if seen else None,
            address=f"{len(members)} instances"))
        rows += [_instance_row(m, nested=True) for m in members]
    return rows
