"""W3C Trace Context's `tracestate` at a hop that makes a span: the list is handed on in
order and recorded as the span's trace state; a member the grammar refuses, or a key seen
before, is dropped alone (the `traceparent` stays); more than 32 members or 512 characters
are cut as the specification says (long members first, then the last ones)."""

import pytest

from proxy.events import RequestEvent
from proxy.otlp import span
from proxy.tracecontext import hand_on, join_trace, trace_state

TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _joined(*states: bytes) -> tuple[RequestEvent, list[tuple[bytes, bytes]]]:
    """The event and the headers handed on of a sampled request carrying `states`."""
    received = [(b"host", b"api"), (b"traceparent", TRACEPARENT),
                *((b"tracestate", state) for state in states), (b"accept", b"*/*")]
    event = RequestEvent(ts=1_700_000_000.0, id="web-1:1", direction="outbound",
                         src_addr="127.0.0.1:5000", method="GET", path="/")
    handed = join_trace(received, event, True)
    assert handed is not None
    sent = list(received)
    hand_on(sent, handed, event.trace_state)
    return event, sent


def test_the_list_is_handed_on_and_recorded_in_the_span() -> None:
    event, sent = _joined(b"congo=t61rcWkgMzE, rojo=00f067aa0ba902b7", b"tenant@vendor=x")
    state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7,tenant@vendor=x"
    assert [value for name, value in sent if name == b"tracestate"] == [state.encode()]
    assert span(event)["traceState"] == state


@pytest.mark.parametrize(("received", "kept"), [
    (b"Upper=1,ok=2", "ok=2"),  # keys are lower case
    (b"ok=1,novalue,=2,k=a=b", "ok=1"),  # no '=', no key, '=' in the value
    (b"ok=1,ok=2", "ok=1"),  # a key seen before
    (b"ok=1,sp=trailing ", "ok=1,sp=trailing"),  # blanks around a member are not its own
    (b"ok=1,,  ,x=\xff", "ok=1"),  # empty members; a value that is not ASCII
])
def test_a_member_the_grammar_refuses_is_dropped_alone(received: bytes, kept: str) -> None:
    event, sent = _joined(received)
    assert event.trace_state == kept
    assert (b"traceparent", TRACEPARENT) not in sent  # this hop's span is the parent
    assert any(name == b"traceparent" for name, _ in sent)


def test_nothing_valid_sends_no_tracestate() -> None:
    event, sent = _joined(b"BAD=1")
    assert event.trace_state == ""
    assert all(name != b"tracestate" for name, _ in sent)


def test_at_most_32_members_are_handed_on() -> None:
    members = [f"k{n}=v" for n in range(40)]
    assert trace_state([",".join(members).encode()]) == ",".join(members[:32])


def test_a_long_list_loses_its_long_members_first_then_its_last() -> None:
    long = "big=" + "x" * 200
    members = [f"k{n:02}=" + "v" * 20 for n in range(22)]  # 24 characters each
    # 20 of them take 20 * 25 - 1 = 499 characters: the long one goes, then the last two
    state = trace_state([",".join([members[0], long, *members[1:]]).encode()])
    assert state == ",".join(members[:20])
