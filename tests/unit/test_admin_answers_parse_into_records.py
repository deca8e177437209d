"""Parsing of admin API documents (DESIGN.md shapes and tolerated variants)."""

from datetime import UTC, datetime

import pytest

from console.api import LogLine, ProxyCerts, ProxyStats, TapEvent, parse_endpoints, parse_time
from console.sources import parse_admin_address
from tests.console.scenes import tap_json


def test_tap_event_keeps_every_field_for_the_detail_pane() -> None:
    event = TapEvent.from_json("web", tap_json(7, status=503, error="upstream.reset"))
    labels = [label for label, _ in event.fields()]
    for label in ("src.id", "dst.service", "dst.instance", "tls", "route", "policy.decision",
                  "policy.rule", "retries", "error", "trace id", "latency"):
        assert label in labels
    assert not event.ok
    assert dict(event.fields())["error"] == "upstream.reset"


def test_stats_accept_flat_and_nested_latency() -> None:
    stats = ProxyStats.from_json({"service": "api", "routes": [
        {"route": "r1", "rps": 2, "success_rate": 1.0, "p50_ms": 1, "p99_ms": 9},
        {"route": "r2", "rps": 1, "latency_ms": {"p50": 2, "p95": 4, "p99": 8}}],
        "upstreams": [{"service": "store", "rps": 3}]})
    assert [r.route for r in stats.inbound] == ["r1", "r2"]
    assert stats.inbound[1].p99_ms == 8
    assert stats.routes[2].direction == "outbound"


def test_certs_infer_kinds_from_chain_order() -> None:
    def c(subject: str, issuer: str) -> dict:
        return {"subject": subject, "issuer": issuer, "serial": subject,
                "not_before": "2026-01-01T00:00:00Z", "not_after": 1_900_000_000}
    certs = ProxyCerts.from_json("api", [c("leaf", "iss"), c("iss", "root"), c("root", "root")])
    assert [x.kind for x in certs.certs] == ["leaf", "issuer", "anchor"]
    assert certs.certs[0].not_before == datetime(2026, 1, 1, tzinfo=UTC)


def test_endpoints_accept_list_or_mapping() -> None:
    listed = parse_endpoints({"upstreams": [
        {"service": "api", "source": "mdns", "instances": [{}, {}], "updated_at": 1.0}]})
    mapped = parse_endpoints({"api": {"source": "mdns", "instances": [{}, {}],
                                      "updated_at": 1.0}})
    assert listed == mapped
    assert listed[0].instances == 2 and listed[0].updated_at == parse_time(1.0)


def test_endpoints_of_an_upstream_without_instances_count_none() -> None:
    parsed = parse_endpoints([{"service": "api", "instances": []}, {"service": "web"}])
    assert [e.instances for e in parsed] == [0, 0]


def test_log_line_renders_fields() -> None:
    line = LogLine.from_json("api", {"ts": 0, "level": "WARN", "logger": "vmesh.proxy",
                                     "msg": "cert renewal failed", "reason": "identity.down"})
    assert line.level == "warning"
    assert line.render() == "00:00:00 WARNING api          cert renewal failed reason=identity.down"


@pytest.mark.parametrize(("text", "kind", "address"), [
    ("10.0.0.5:4191", "tcp", "10.0.0.5:4191"),
    ("host-a", "tcp", "host-a:4191"),
    ("[::1]:5000", "tcp", "[::1]:5000"),
    ("/run/vmesh/api.sock", "unix", "/run/vmesh/api.sock"),
])
def test_admin_addresses(text: str, kind: str, address: str) -> None:
    source = parse_admin_address(text)
    assert (source.kind, source.address) == (kind, address)


def test_bad_admin_port_is_a_user_error() -> None:
    with pytest.raises(ValueError, match="port must be a number"):
        parse_admin_address("host:99999")
