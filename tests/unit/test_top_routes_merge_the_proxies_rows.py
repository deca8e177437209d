"""`top`'s routes: the same route or upstream of several proxies is one line, its requests in
flight and its rates added up; a proxy that does not answer adds nothing."""

from console.api import ProxyStats
from console.models.overview import SourceStatus
from console.models.routes import route_rows


def proxy(name: str, service: str, routes: list[dict], upstreams: list[dict],
          reachable: bool = True) -> SourceStatus:
    status = SourceStatus(name, f"/run/vmesh/{name}.sock")
    status.succeeded(0.0)
    status.stats = ProxyStats.from_json({"service": service, "routes": routes,
                                         "upstreams": upstreams})
    if not reachable:  # its last stats stay, but count no more
        status.failed("admin.connect_refused", "refused")
    return status


def row(service: str, in_flight: int, rps: float, route: str = "default") -> dict:
    return {"service": service, "route": route, "rps": rps, "in_flight": in_flight,
            "requests": int(rps * 60), "success_rate": 1.0 if rps else None}


def test_a_route_of_two_instances_and_an_upstream_of_two_callers_add_up() -> None:
    rows = route_rows([
        proxy("api-1", "api", [row("api", 2, 10.0)], [row("store", 1, 4.0)]),
        proxy("api-2", "api", [row("api", 3, 0.0)], [row("store", 0, 6.0)]),
        proxy("web", "web", [], [row("api", 5, 10.0), row("store", 1, 1.0, "/v2")]),
        proxy("gone", "api", [row("api", 7, 1.0)], [], reachable=False),
    ])
    assert [(r.direction, r.service, r.route, r.golden.in_flight, r.golden.rps)
            for r in rows] == [
        ("inbound", "api", "default", 5, 10.0),
        ("outbound", "api", "default", 5, 10.0),
        ("outbound", "store", "/v2", 1, 1.0),
        ("outbound", "store", "default", 1, 10.0),
    ]
