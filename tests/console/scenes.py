"""Deterministic admin-API answers for view-model tests and layout snapshots.

Built as the JSON documents of DESIGN.md (tap events, stats, certs), so every
test also goes through the console's parsing. Live behaviour is tested
against real processes elsewhere; these only pin content so that a snapshot
shows layout, not the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from console.api import LogLine, ProxyCerts, ProxyStats, TapEvent, parse_endpoints
from console.checks import judge_polls
from console.collect import Poll
from console.sources import Source
from console.state import MeshData

NOW = datetime(2026, 11, 25, 8, 0, 0, tzinfo=UTC)
TD = "vmesh.local"


def tap_json(n: int, *, proxy_dir: str = "outbound", src: str | None = None,
             dst: str = "api", method: str = "GET", path: str = "/items",
             status: int | None = 200, latency_ms: float = 3.0, tls: bool = True,
             error: str | None = None, ts: float | None = None,
             src_addr: str = "127.0.0.1:50000") -> dict[str, Any]:
    return {
        "ts": ts if ts is not None else NOW.timestamp() - 20 + n * 0.5,
        "id": f"r{n}",
        "direction": proxy_dir,
        "src": {"id": f"spiffe://{TD}/svc/{src}" if src else None, "addr": src_addr},
        "dst": {"service": dst, "instance": f"{dst}-1", "addr": "127.0.0.1:4143",
                "id": f"spiffe://{TD}/svc/{dst}"},
        "tls": tls, "method": method, "authority": dst, "path": path, "route": "default",
        "status": status, "latency_ms": latency_ms, "bytes_in": 120, "bytes_out": 512,
        "retries": 0, "policy": {"decision": "allow", "rule": "default"}, "error": error,
        "trace_id": f"trace-{n}",
    }


def tap_event(n: int, proxy: str = "web", **kwargs: Any) -> TapEvent:
    return TapEvent.from_json(proxy, tap_json(n, **kwargs))


def cert_json(kind: str, name: str, not_before: datetime, not_after: datetime,
              serial: str) -> dict[str, Any]:
    san = [f"spiffe://{TD}/svc/{name}"] if kind == "leaf" else [f"spiffe://{TD}"]
    dns = [f"proxy.{TD}"] if kind == "leaf" else []
    return {"kind": kind, "subject": f"CN={name}", "san": san, "dns": dns, "serial": serial,
            "not_before": not_before.isoformat(), "not_after": not_after.isoformat(),
            "issuer": "CN=vmesh issuer"}


def certs_json(service: str, leaf_left: timedelta, serial: str) -> dict[str, Any]:
    leaf_after = NOW + leaf_left
    return {
        "identity": f"spiffe://{TD}/svc/{service}",
        "chain": [
            cert_json("leaf", service, leaf_after - timedelta(hours=24), leaf_after, serial),
            cert_json("issuer", "vmesh issuer", NOW - timedelta(days=30),
                      NOW + timedelta(days=335), "1551"),
        ],
        "bundle": [cert_json("anchor", "vmesh anchor", NOW - timedelta(days=30),
                             NOW + timedelta(days=3620), "a0")],
        "next_renewal": (leaf_after - timedelta(hours=24 * 0.3)).isoformat(),
    }


def stats_json(service: str, rps: float, success: float, p50: float, p99: float,
               in_flight: int = 0, upstreams: tuple[str, ...] = ()) -> dict[str, Any]:
    """A proxy's stats: its route `default` and, with the same numbers, its `upstreams`."""
    def row(name: str) -> dict[str, Any]:
        return {"route": "default", "service": name, "rps": rps, "success_rate": success,
                "p50_ms": p50, "p95_ms": p99 * 0.8, "p99_ms": p99, "requests": int(rps * 60),
                "in_flight": in_flight}

    return {"service": service, "instance": f"{service}-1", "version": "0.1.0",
            "window_s": 60, "tcp_open": 3, "routes": [row(service)],
            "upstreams": [row(name) for name in upstreams]}


def endpoints_json() -> dict[str, Any]:
    """web's upstreams: api failed over to api.east four minutes ago (dc1 lists no instance
    of api), api.east reached through east's mesh gateway, store with one instance ejected."""
    def instance(instance_id: str, port: int, breaker: str,
                 gateway: str | None = None) -> dict[str, Any]:
        return {"id": instance_id, "addr": f"127.0.0.1:{port}", "zone": "", "weight": 100,
                "version": "0.1.0", "ewma_ms": 3.0, "pending": 0,
                "breaker": {"state": breaker, "consecutive_failures": 0, "ejections": 0,
                            "reopens_in_s": 0.0},
                "last_seen": NOW.timestamp() - 5,
                "gateway": {"server_name": gateway} if gateway else None}

    def upstream(service: str, *instances: dict[str, Any],
                 failover: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"service": service, "source": "consul", "updated_at": NOW.timestamp() - 300,
                "age_s": 300.0, "stale": False, "refused": None, "failover": failover,
                "instances": list(instances)}

    return {"upstreams": [
        upstream("api", failover={"to": "api.east", "reason": "no_endpoints",
                                  "detail": "discovery lists no instance of api",
                                  "since": NOW.timestamp() - 240}),
        upstream("api.east", instance("east-gw-1", 4180, "closed", f"api.east.{TD}")),
        upstream("store", instance("store-1", 4143, "closed"),
                 instance("store-2", 4144, "open")),
    ]}


def scene(*, api_instances: int = 0) -> MeshData:
    """Three proxies (one down), a leaf expired, traffic and logs, frozen at NOW.

    `api_instances`: that many instances of api (`api-1`, ...), the last one
    not ready, instead of one proxy named api.
    """
    data = MeshData(clock=lambda: NOW.timestamp())
    data.top.watched_since = NOW.timestamp() - 60  # the console has watched for a minute
    apis = [(f"api-{n}", "api") for n in range(1, api_instances + 1)] or [("api", "api")]
    layout = [*((name, service, 12.5, 0.995, 3.0, 40.0, timedelta(hours=20), 2, ())
                for name, service in apis),
              ("store", "store", 4.0, 0.9, 8.0, 250.0, -timedelta(hours=2), 1, ()),
              ("web", "web", 20.0, 1.0, 2.0, 15.0, timedelta(hours=5), 0, ("api", "store"))]
    for i, (name, service, rps, success, p50, p99, left, in_flight, upstreams) in enumerate(
            layout):
        source = Source(name, "unix", f"/run/vmesh/{name}.sock")
        ready = not (api_instances > 1 and name == apis[-1][0])
        stats = stats_json(service, rps, success, p50, p99, in_flight, upstreams)
        poll = Poll(source, True, ready=ready, at=NOW.timestamp() - 1,
                    stats=ProxyStats.from_json(stats),
                    certs=ProxyCerts.from_json(name, certs_json(service, left, f"5e{i}")),
                    endpoints=parse_endpoints(endpoints_json()) if upstreams else [])
        data.apply_poll(poll)
    down = Source("cache", "unix", "/run/vmesh/cache.sock")
    data.apply_poll(Poll(down, False, "admin.connect_refused",
                         "connection to /run/vmesh/cache.sock refused (proxy not running?)"))
    for n in range(40):
        status = 503 if n % 10 == 9 else 200
        data.add_tap(tap_event(n, "web", dst="api" if n % 3 else "store",
                               path=f"/items/{n % 4}", status=status,
                               latency_ms=2.0 + (n % 7) * 3.5,
                               method="GET" if n % 5 else "POST"))
    for n in range(12):
        level = ("info", "warning", "error")[n % 3]
        data.add_log(LogLine.from_json(("api", "web", "store")[n % 3], {
            "ts": NOW.timestamp() - 30 + n, "level": level, "logger": "vmesh.proxy",
            "msg": f"event {n}", "peer": f"127.0.0.1:{5000 + n}"}))
    data.findings = judge_polls(list(data.polls.values()), NOW)
    return data
