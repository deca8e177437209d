"""W3C Trace Context at a hop: a sampled trace gets a span of this proxy's, handed on as the
parent; what the specification says to ignore is forwarded untouched."""

import pytest

from proxy.events import RequestEvent
from proxy.otlp import span
from proxy.tracecontext import hand_on, join_trace, parse_traceparent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def _event(direction: str = "outbound") -> RequestEvent:
    return RequestEvent(ts=1_700_000_000.25, id="web-1:7", direction=direction,  # type: ignore[arg-type]
                        src_addr="127.0.0.1:5000", method="GET", path="/items",
                        dst_service="api", status=200, latency_ms=12.5)


def _carrying(*traceparents: str) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"api"), *((b"traceparent", t.encode()) for t in traceparents)]


def test_a_sampled_trace_gets_a_span_of_this_hop_handed_on_as_the_parent() -> None:
    event = _event()
    handed = join_trace(_carrying(f"00-{TRACE}-{PARENT}-01"), event, True)
    assert event.trace_id == TRACE and event.parent_span_id == PARENT
    assert event.span_id is not None and len(event.span_id) == 16 and event.span_id != PARENT
    assert handed == f"00-{TRACE}-{event.span_id}-01".encode()
    headers = [(b"host", b"api"), (b"traceparent", b"old"), (b"accept", b"*/*")]
    hand_on(headers, handed, "")
    assert headers == [(b"host", b"api"), (b"traceparent", handed), (b"accept", b"*/*")]


def test_with_no_collector_a_sampled_trace_is_recorded_and_forwarded_as_it_came() -> None:
    event = _event()
    assert join_trace(_carrying(f"00-{TRACE}-{PARENT}-01"), event, False) is None
    assert (event.trace_id, event.span_id) == (TRACE, None)


def test_an_unsampled_trace_is_recorded_and_forwarded_as_it_came() -> None:
    event = _event()
    assert join_trace(_carrying(f"00-{TRACE}-{PARENT}-00"), event, True) is None
    assert (event.trace_id, event.span_id) == (TRACE, None)


@pytest.mark.parametrize("value", [
    f"00-{TRACE}-{PARENT}",  # a field missing
    f"00-{TRACE.upper()}-{PARENT}-01",  # upper-case hex
    f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
    f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
    f"ff-{TRACE}-{PARENT}-01",  # the forbidden version
    f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has exactly four fields
    f"00-{TRACE[:-1]}-{PARENT}-01",  # a short trace id
    f"00-{TRACE}-{PARENT}0-01",  # a long parent id
    f"0g-{TRACE}-{PARENT}-01",  # a version that is not hex
    f"00-{TRACE}-{PARENT}-0x",  # flags that are not hex
    f"00-{TRACE}-{PARENT}-01-",  # version 00 ends with its flags
    f"01-{TRACE}-{PARENT}-01.future",  # a later version's fields follow a dash
    f"00_{TRACE}_{PARENT}_01",  # not dashes
])
def test_a_value_the_specification_says_to_ignore_is_left_alone(value: str) -> None:
    event = _event()
    assert parse_traceparent(value.encode()) is None
    assert join_trace(_carrying(value), event, True) is None
    assert (event.trace_id, event.span_id) == (None, None)


def test_two_traceparent_headers_are_left_alone() -> None:
    event = _event()
    other = "5" * 32
    assert join_trace(_carrying(f"00-{TRACE}-{PARENT}-01", f"00-{other}-{PARENT}-01"),
                      event, True) is None
    assert (event.trace_id, event.span_id) == (None, None)


@pytest.mark.parametrize(("received", "handed_flags"), [
    (f"00-{TRACE}-{PARENT}-ff", "03"),  # unknown flags are not passed on
    (f"01-{TRACE}-{PARENT}-81-future", "01"),  # nor relabelled as version 00's
])
def test_only_the_flags_this_version_knows_are_handed_on(received: str, handed_flags: str,
                                                        ) -> None:
    event = _event()
    handed = join_trace(_carrying(received), event, True)
    assert handed == f"00-{TRACE}-{event.span_id}-{handed_flags}".encode()


def test_a_later_version_is_read_by_its_first_four_fields() -> None:
    parsed = parse_traceparent(f"01-{TRACE}-{PARENT}-01-future".encode())
    assert parsed is not None and (parsed.trace_id, parsed.sampled) == (TRACE, True)


def test_the_span_carries_the_request_as_otlp_json_says() -> None:
    event = _event("inbound")
    join_trace(_carrying(f"00-{TRACE}-{PARENT}-01"), event, True)
    event.status, event.error = 502, "app.connect_failed: refused"
    exported = span(event)
    assert (exported["traceId"], exported["parentSpanId"]) == (TRACE, PARENT)
    assert exported["kind"] == 2  # SERVER: the inbound proxy's side
    assert exported["startTimeUnixNano"] == "1700000000250000000"
    assert exported["endTimeUnixNano"] == "1700000000262500000"  # 12.5 ms later
    assert exported["status"] == {"code": 2}
    attributes = {a["key"]: a["value"] for a in exported["attributes"]}
    assert attributes["http.response.status_code"] == {"intValue": "502"}
    assert attributes["error.type"] == {"stringValue": "app.connect_failed"}
    assert attributes["url.path"] == {"stringValue": "/items"}
