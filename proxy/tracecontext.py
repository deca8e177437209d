"""W3C Trace Context as a proxy takes part in it: each hop of a sampled trace is a span.

A request that arrives with a valid `traceparent` gets its trace id recorded in
its event. When the trace is sampled (flag 01), the proxy also makes a span of
its own: the `traceparent` it hands on names that span as the parent, and the
span is exported (`proxy.otlp`); with no collector to export to, the proxy makes no span
and hands the `traceparent` on as it came. As in Linkerd, the proxy never starts a trace:
an app or an ingress decides what is sampled. A value the specification says
to ignore (malformed, all-zero ids, version ff) is forwarded untouched.
"""

import os

from proxy.events import RequestEvent

_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
# sampled (01) and, from Trace Context Level 2, random (02): others are not passed on
KNOWN_FLAGS = 0x03


class TraceParent:
    """A parsed `traceparent`: trace id, parent span id and flags."""

    __slots__ = ("flags", "parent_id", "trace_id")

    def __init__(self, trace_id: str, parent_id: str, flags: int) -> None:
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.flags = flags

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 0x01)


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and set(text) <= _HEX


def parse_traceparent(value: bytes) -> TraceParent | None:
    """The header's fields, or None when the specification says to ignore it."""
    parts = value.decode("ascii", "replace").strip().split("-")
    if len(parts) < 4:
        return None
    version, trace_id, parent_id, flags = parts[:4]
    if not _is_hex(version, 2) or version == "ff" or (version == "00" and len(parts) != 4):
        return None
    if not _is_hex(trace_id, 32) or trace_id == _ZERO_TRACE:
        return None
    if not _is_hex(parent_id, 16) or parent_id == _ZERO_SPAN:
        return None
    if not _is_hex(flags, 2):
        return None
    return TraceParent(trace_id, parent_id, int(flags, 16))


def new_span_id() -> str:
    """Eight random bytes in hex, never all zero."""
    while (span_id := os.urandom(8).hex()) == _ZERO_SPAN:
        pass
    return span_id


def join_trace(
    headers: list[tuple[bytes, bytes]], event: RequestEvent, exporting: bool
) -> bytes | None:
    """Record the trace of a request (its `headers`) in `event`; when it is sampled and spans
    are `exporting`, start this hop's span in it and return the `traceparent` to hand on (else
    None: forward what came, since a span no collector gets would orphan the next hop's).
    Two `traceparent` headers name no one trace: they are ignored."""
    traceparent = None
    for name, value in headers:
        if name == b"traceparent":
            if traceparent is not None:
                return None
            traceparent = value
    if traceparent is None:
        return None
    parent = parse_traceparent(traceparent)
    if parent is None:
        return None
    event.trace_id = parent.trace_id
    if not (exporting and parent.sampled):
        return None
    event.parent_span_id = parent.parent_id
    event.span_id = span_id = new_span_id()
    return f"00-{parent.trace_id}-{span_id}-{parent.flags & KNOWN_FLAGS:02x}".encode()


def hand_on(headers: list[tuple[bytes, bytes]], traceparent: bytes) -> None:
    """Put this hop's `traceparent` in place of the one received, in the headers sent on."""
    for index, (name, _) in enumerate(headers):
        if name == b"traceparent":
            headers[index] = (name, traceparent)
