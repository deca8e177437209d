"""A proxy's span reads as OpenTelemetry's HTTP semantic conventions say, so a collector's
or Jaeger's views of HTTP spans work on it: a 4xx is an error for the caller's CLIENT
span but not for the callee's SERVER span, `error.type` names the failure (the status
when nothing else does), the host and port are apart, and a method no HTTP specification
defines does not become a label of its own."""

from typing import Any

import pytest

from proxy.events import RequestEvent
from proxy.otlp import span


def _span(direction: str, status: int | None = 200, error: str | None = None,
          method: str = "GET", authority: str = "api") -> dict[str, Any]:
    event = RequestEvent(ts=1_700_000_000.0, id="web-1:1", direction=direction,  # type: ignore[arg-type]
                         src_addr="127.0.0.1:5000", method=method, path="/items",
                         authority=authority, dst_service="api", status=status,
                         error=error, latency_ms=1.0)
    event.trace_id, event.span_id = "1" * 32, "2" * 16
    return span(event)


def _attributes(exported: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: next(iter(a["value"].values())) for a in exported["attributes"]}


@pytest.mark.parametrize(("direction", "status", "error", "is_error", "error_type"), [
    ("outbound", 404, None, True, "404"),  # the caller did not get what it asked for
    ("inbound", 404, None, False, None),  # the server did its job
    ("inbound", 503, None, True, "503"),
    ("outbound", 200, None, False, None),
    ("outbound", 502, "app.connect_failed: refused", True, "app.connect_failed"),
    ("outbound", None, "client.closed: gone", True, "client.closed"),
])
def test_status_and_error_type_follow_the_span_kind(
    direction: str, status: int | None, error: str | None, is_error: bool,
    error_type: str | None,
) -> None:
    exported = _span(direction, status, error)
    assert exported["status"] == ({"code": 2} if is_error else {})
    assert _attributes(exported).get("error.type") == error_type


@pytest.mark.parametrize(("authority", "address", "port"), [
    ("api", "api", None),
    ("api:8080", "api", "8080"),
    ("[::1]:9000", "::1", "9000"),
    ("[::1]", "::1", None),
])
def test_the_server_address_and_port_are_apart(authority: str, address: str,
                                               port: str | None) -> None:
    attributes = _attributes(_span("outbound", authority=authority))
    assert attributes["server.address"] == address
    assert attributes.get("server.port") == port


def test_the_scheme_and_protocol_version_are_said() -> None:
    attributes = _attributes(_span("inbound"))
    assert (attributes["url.scheme"], attributes["network.protocol.version"]) == ("http", "1.1")


def test_a_method_no_http_specification_defines_is_other() -> None:
    exported = _span("outbound", method="PURGE")
    attributes = _attributes(exported)
    assert attributes["http.request.method"] == "_OTHER"
    assert attributes["http.request.method_original"] == "PURGE"
    assert exported["name"] == "HTTP api"
    assert _span("outbound", method="PATCH")["name"] == "PATCH api"
