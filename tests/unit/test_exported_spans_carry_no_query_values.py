"""A span leaves the mesh for a collector, often run by someone else: its `url.path` is the
path alone and its `url.query` keeps the query's keys with every value redacted (the
proxy cannot tell an `access_token` from a page number), as OpenTelemetry's URL
conventions ask of an instrumentation that cannot identify what is sensitive."""

import json

from proxy.events import RequestEvent
from proxy.otlp import span


def _attributes(path: str) -> dict[str, object]:
    event = RequestEvent(ts=1_700_000_000.0, id="web-1:1", direction="outbound",
                         src_addr="127.0.0.1:5000", method="GET", path=path,
                         dst_service="api", status=200, latency_ms=1.0)
    event.trace_id, event.span_id = "1" * 32, "2" * 16
    exported = span(event)
    assert "s3cr3t" not in json.dumps(exported)
    return {a["key"]: a["value"] for a in exported["attributes"]}


def test_the_query_is_exported_apart_with_its_values_redacted() -> None:
    attributes = _attributes("/items?access_token=s3cr3t&page=2&flag")
    assert attributes["url.path"] == {"stringValue": "/items"}
    assert attributes["url.query"] == {"stringValue": "access_token=REDACTED&page=REDACTED&flag"}


def test_a_path_without_a_query_has_no_query_attribute() -> None:
    attributes = _attributes("/items/7")
    assert attributes["url.path"] == {"stringValue": "/items/7"}
    assert "url.query" not in attributes
