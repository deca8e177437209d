"""Listeners full or near their connection cap, as `vmesh stat` and `vmesh check` judge them
from `/v1/stats`: per proxy, the full ones first, from 80 % of the cap; nothing claimed for a
proxy that does not report its listeners (a version without caps)."""

from console.api import ProxyStats
from console.models.checks import Status, check_listeners
from console.models.overview import SourceStatus, stat_rows
from tests.console.scenes import stats_json


def proxy(name: str, service: str, listeners: dict | None, reachable: bool = True
          ) -> SourceStatus:
    s = SourceStatus(name, f"/run/vmesh/{name}.sock")
    data = stats_json(service, 1, 1.0, 1.0, 5)
    if listeners is not None:
        data["listeners"] = {n: {"open": o, "max": m, "saturated": o >= m, "saturations": 0}
                             for n, (o, m) in listeners.items()}
    s.stats = ProxyStats.from_json(data)
    if reachable:
        s.succeeded(0.0)
        s.ready = True
    else:
        s.failed("admin.connect_refused", "refused")
    return s


def test_each_proxy_names_its_crowded_listeners_the_full_ones_first() -> None:
    rows = stat_rows([
        proxy("api-1", "api", {"inbound": (90, 100), "outbound": (5, 5), "admin": (1, 64)}),
        proxy("api-2", "api", {"inbound": (79, 100), "tcp:db": (80, 100)}),
        proxy("api-3", "api", {"outbound": (5, 5)}, reachable=False),  # its stats are old
        proxy("web", "web", {"inbound": (0, 100)}),
        proxy("old", "old", None),
    ])
    crowded = {r.name: r.crowded for r in rows}
    assert [(c.proxy, c.summary, c.state) for c in crowded["api"] or ()] == [
        ("api-1", "outbound 5/5 full", "saturated"),
        ("api-1", "inbound 90/100 90%", "near_cap"),
        ("api-2", "tcp:db 80/100 80%", "near_cap"),
    ]
    assert crowded["web"] == ()
    assert crowded["old"] is None  # not known, not "ok"


def test_check_fails_a_full_listener_warns_near_the_cap_and_names_the_key_to_raise() -> None:
    stats = proxy("db-2", "db", {"tcp:pg": (10, 10), "admin-socket": (60, 64),
                                 "inbound": (1, 100)}).stats
    assert stats is not None
    findings = check_listeners("db-2", "db", stats.listeners)
    assert [(f.status, f.target, f.reason) for f in findings] == [
        (Status.FAIL, "db-2 tcp:pg", "listeners.saturated"),
        (Status.WARN, "db-2 admin-socket", "listeners.near_cap"),
    ]
    assert "`[max_connections] tcp` in /etc/vmesh/services/db.toml" in findings[0].hint
    assert "`[max_connections] admin`" in findings[1].hint
    assert findings[1].message == "60/64 connections, 93% of its cap"


def test_check_names_gateway_toml_for_a_full_mesh_gateway() -> None:
    stats = proxy("vmesh-gateway", "vmesh-gateway", {"gateway": (3, 3),
                                                     "admin-socket": (0, 64)}).stats
    assert stats is not None
    [finding] = check_listeners("vmesh-gateway", "vmesh-gateway", stats.listeners)
    assert (finding.status, finding.target) == (Status.FAIL, "vmesh-gateway gateway")
    assert ("raise `[max_connections] gateway` in /etc/vmesh/gateway.toml (and the unit's "
            "LimitNOFILE) and restart vmesh-gateway") in finding.hint


def test_check_passes_listeners_below_the_mark_and_says_nothing_without_them() -> None:
    stats = proxy("web", "web", {"inbound": (79, 100), "outbound": (0, 100)}).stats
    assert stats is not None
    [finding] = check_listeners("web", "web", stats.listeners)
    assert (finding.status, finding.reason) == (Status.OK, "listeners.below_cap")
    assert finding.message == "2 listeners below 80% of their caps"
    assert check_listeners("old", "old", ()) == []
