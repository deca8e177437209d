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
import re

from proxy.events import RequestEvent

_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
# sampled (01) and, from Trace Context Level 2, random (02): others are not passed on
KNOWN_FLAGS = 0x03
MAX_STATE_MEMBERS = 32  # a tracestate holds at most these
MAX_STATE_CHARS = 512  # what every hop must pass on at least; the proxy passes no more
LONG_MEMBER = 128  # over this, a member is the first to go when the list is too long
# the specification's grammar of a list member's key (simple or tenant@system) and value
_STATE_KEY = re.compile(
    r"[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13}")
_STATE_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")


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
    are `exporting`, start this hop's span in it (with its `trace_state`) and return the
    `traceparent` to hand on (else None: forward what came, since a span no collector gets
    would orphan the next hop's). Two `traceparent` headers name no one trace: they are
    ignored."""
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
    event.trace_state = trace_state([value for name, value in headers if name == b"tracestate"])
    return f"00-{parent.trace_id}-{span_id}-{parent.flags & KNOWN_FLAGS:02x}".encode()


def trace_state(values: list[bytes]) -> str:
    """The `tracestate` to hand on, from the values received (one list, however many header
    lines): its members in order, less those the specification's grammar refuses and any
    key seen before; at most `MAX_STATE_MEMBERS` members and `MAX_STATE_CHARS` characters,
    members over `LONG_MEMBER` characters going first, then the last ones. A bad member
    costs that member alone, never the `traceparent`."""
    members: list[str] = []
    keys: set[str] = set()
    for value in values:
        for member in value.decode("ascii", "replace").split(","):
            member = member.strip(" \t")
            key, equals, state = member.partition("=")
            if (equals and key not in keys and _STATE_KEY.fullmatch(key) is not None
                    and _STATE_VALUE.fullmatch(state) is not None):
                keys.add(key)
                members.append(member)
    del members[MAX_STATE_MEMBERS:]
    while len(",".join(members)) > MAX_STATE_CHARS:
        long = [index for index, member in enumerate(members) if len(member) > LONG_MEMBER]
        members.pop(long[0] if long else -1)
    return ",".join(members)


def hand_on(
    headers: list[tuple[bytes, bytes]], traceparent: bytes, tracestate: str
) -> None:
    """Put this hop's `traceparent` and `tracestate` (none when empty) in place of those
    received, in the headers sent on."""
    kept = [(name, value) for name, value in headers if name != b"tracestate"]
    headers[:] = [
        (name, traceparent) if name == b"traceparent" else (name, value) for name, value in kept
    ]
    if tracestate:
        headers.append((b"tracestate", tracestate.encode()))
