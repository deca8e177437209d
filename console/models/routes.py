"""`top`'s routes: the `/v1/stats` rows of every proxy that answers, merged per route.

A proxy reports each of its inbound routes and outbound upstreams as a row
(direction, service, route). The same row of several proxies (two instances of
a service, two callers of one upstream) is one line here: rates and requests
in flight add up, success and latency combine as the overview's do.
"""

from __future__ import annotations

from dataclasses import dataclass

from console.api import RouteStats
from console.models.overview import Golden, SourceStatus, combine


@dataclass(frozen=True, slots=True)
class RouteRow:
    """One route or upstream across the proxies that report it."""

    direction: str
    service: str
    route: str
    golden: Golden

    @property
    def key(self) -> str:
        return f"{self.direction}|{self.service}|{self.route}"


def route_rows(statuses: list[SourceStatus]) -> list[RouteRow]:
    """Every route and upstream of the proxies that answer now, by direction, service and
    route (a stable order, so a line stays in place while its numbers change)."""
    groups: dict[tuple[str, str, str], list[RouteStats]] = {}
    for status in statuses:
        if status.reachable and status.stats:
            for route in status.stats.routes:
                groups.setdefault((route.direction, route.service, route.route), []).append(route)
    return [RouteRow(*key, golden=combine(routes)) for key, routes in sorted(groups.items())]
