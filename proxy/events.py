"""The one event every request produces, and the bus that hands it to subscribers.

Metrics, tap and the access log are subscribers of the same bus; the
forwarding path only fills a `RequestEvent` and publishes it. Fields are flat
(cheap to fill); the nested tap shape of DESIGN.md is built only on demand by
`to_tap()` or `tap_line()`, so events cost almost nothing when nobody taps; so is the
redaction of a path's query values, which `path` keeps for the spans to split off.
"""

import asyncio
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any, Final, Literal

from vm_mesh.redaction import redacted_target

if TYPE_CHECKING:
    from proxy.stats import Series

Direction = Literal["inbound", "outbound"]
Subscriber = Callable[["RequestEvent"], None]

# Characters an event keeps of a field a client chooses (the Host header may be 32 kB, a
# path 8 kB): the access log, its ring, tap feeds and queued spans keep what an event holds.
# (As vm_mesh.logs cuts any text field of a log line.)
MAX_CLIENT_TEXT: Final = 1024
TRUNCATED: Final = "…"  # marks a field cut to MAX_CLIENT_TEXT


class RequestEvent:
    """What happened to one request (or one opaque TCP connection) at this proxy.

    A plain class with its own `__init__` rather than a dataclass: every request makes
    one, and mypyc compiles this `__init__`, while a dataclass's is generated at run time
    and interpreted (ten times the cost for these 25 fields).
    """

    __slots__ = (
        "_line",
        "authority",
        "authz_reason",
        "bytes_in",
        "bytes_out",
        "direction",
        "dst_addr",
        "dst_id",
        "dst_instance",
        "dst_service",
        "error",
        "id",
        "latency_ms",
        "method",
        "parent_span_id",
        "path",
        "policy_decision",
        "policy_rule",
        "response_at",
        "response_ms",
        "retries",
        "route",
        "service",
        "span_id",
        "src_addr",
        "src_id",
        "stats_row",
        "status",
        "tls",
        "trace_id",
        "trace_state",
        "ts",
    )

    def __init__(
        self,
        ts: float,
        id: str,
        direction: Direction,
        src_addr: str,
        *,
        src_id: str | None = None,
        dst_service: str | None = None,
        dst_instance: str | None = None,
        dst_addr: str | None = None,
        dst_id: str | None = None,
        tls: bool = False,
        method: str | None = None,
        authority: str | None = None,
        path: str | None = None,
        route: str = "default",
        status: int | None = None,
        latency_ms: float = 0.0,
        bytes_in: int = 0,
        bytes_out: int = 0,
        retries: int = 0,
        policy_decision: str | None = None,
        policy_rule: str | None = None,
        error: str | None = None,
        trace_id: str | None = None,
        service: str | None = None,
        authz_reason: str | None = None,
        span_id: str | None = None,
        parent_span_id: str | None = None,
    ) -> None:
        self.ts = ts
        self.id = id
        self.direction = direction
        self.src_addr = src_addr
        self.src_id = src_id
        self.dst_service = dst_service
        self.dst_instance = dst_instance
        self.dst_addr = dst_addr
        self.dst_id = dst_id
        self.tls = tls
        self.method = method
        self.authority = authority
        self.path = path
        self.route = route
        self.status = status
        self.latency_ms = latency_ms
        self.bytes_in = bytes_in
        self.bytes_out = bytes_out
        self.retries = retries
        self.policy_decision = policy_decision
        self.policy_rule = policy_rule
        self.error = error
        self.trace_id = trace_id
        self.service = service  # outbound: the logical service routed to (dst: its backend)
        self.authz_reason = authz_reason
        # this proxy's span of a sampled trace (proxy.tracecontext), and its parent's
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.trace_state = ""  # the `tracestate` of that span, as handed on
        # when the response head came (time.monotonic(); 0.0: the proxy answered itself),
        # and the time to it: what latency metrics and stats measure, as Linkerd's do
        self.response_at = 0.0
        self.response_ms = latency_ms
        # the golden-stats row counting this request in flight, from its routing to its record
        self.stats_row: Series | None = None
        self._line: bytes | None = None

    def bound_client_text(self) -> None:
        """Cut each field a client chooses (authority, path, and the services an outbound
        Host header names) to `MAX_CLIENT_TEXT` characters and `TRUNCATED`; once, as the
        event is published. A field of the usual length costs a length check."""
        self.authority = _bounded(self.authority)
        self.path = _bounded(self.path)
        self.dst_service = _bounded(self.dst_service)
        self.service = _bounded(self.service)

    def to_tap(self) -> dict[str, Any]:
        """The tap event of DESIGN.md (one JSON object per line on `/v1/tap`), its `path`
        with the query's values redacted (`vm_mesh.redaction`); the access log's too."""
        return {
            "ts": self.ts,
            "id": self.id,
            "direction": self.direction,
            "src": {"id": self.src_id, "addr": self.src_addr},
            "dst": {
                "service": self.dst_service,
                "instance": self.dst_instance,
                "addr": self.dst_addr,
                "id": self.dst_id,
            },
            "tls": self.tls,
            "method": self.method,
            "authority": self.authority,
            "path": redacted_target(self.path),
            "route": self.route,
            "status": self.status,
            "latency_ms": round(self.latency_ms, 3),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "retries": self.retries,
            "policy": {"decision": self.policy_decision, "rule": self.policy_rule},
            "error": self.error,
            "trace_id": self.trace_id,
        }

    def tap_line(self) -> bytes:
        """`to_tap()` as one NDJSON line, made once however many taps read it (an event is
        final once published)."""
        line = self._line
        if line is None:
            line = self._line = self._format_tap_line()
        return line

    def _format_tap_line(self) -> bytes:
        """`to_tap()` as `json` would write it (ASCII, compact), but without building the
        dict: the encoder costs four times as much for this shape. (`_quoted` for the fields
        that are always strings, `_text` for those that may be None; pieces joined rather
        than an f-string, which mypyc compiles to code twice as slow as the interpreter's.)"""
        status = self.status
        return "".join(
            [
                '{"ts":', repr(self.ts),
                ',"id":', _quoted(self.id),
                ',"direction":', _quoted(self.direction),
                ',"src":{"id":', _text(self.src_id),
                ',"addr":', _quoted(self.src_addr),
                '},"dst":{"service":', _text(self.dst_service),
                ',"instance":', _text(self.dst_instance),
                ',"addr":', _text(self.dst_addr),
                ',"id":', _text(self.dst_id),
                '},"tls":', "true" if self.tls else "false",
                ',"method":', _text(self.method),
                ',"authority":', _text(self.authority),
                ',"path":', _text(redacted_target(self.path)),
                ',"route":', _quoted(self.route),
                ',"status":', "null" if status is None else str(status),
                ',"latency_ms":', repr(round(self.latency_ms, 3)),
                ',"bytes_in":', str(self.bytes_in),
                ',"bytes_out":', str(self.bytes_out),
                ',"retries":', str(self.retries),
                ',"policy":{"decision":', _text(self.policy_decision),
                ',"rule":', _text(self.policy_rule),
                '},"error":', _text(self.error),
                ',"trace_id":', _text(self.trace_id),
                "}\n",
            ]
        ).encode()


_quoted = encode_basestring_ascii  # a str as a JSON string, by the json module's C encoder


def _text(value: str | None) -> str:
    """A JSON string, or null."""
    return "null" if value is None else _quoted(value)


def _bounded(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_CLIENT_TEXT:
        return text
    return text[:MAX_CLIENT_TEXT] + TRUNCATED


class EventBus:
    """Fan-out of request events to subscribers, which must not block.

    With `batch` above 1 the bus holds events and hands them on `batch` at a time,
    or `delay` seconds after the first one held, whichever comes first: each
    subscriber then runs over a batch in one go, its code and tables warm, which
    costs the request path less than a call per subscriber per request. What reads
    subscriber state (a scrape, `/v1/stats`, the log ring) calls `flush()` first.
    """

    def __init__(self, batch: int = 1, delay: float = 0.05) -> None:
        self._subscribers: tuple[Subscriber, ...] = ()
        self._batch = batch
        self._delay = delay
        self._held: list[RequestEvent] = []
        self._timer: asyncio.TimerHandle | None = None

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns the function that removes it again."""
        self.flush()  # a new subscriber sees only what is published from now on
        self._subscribers = (*self._subscribers, subscriber)

        def unsubscribe() -> None:
            self.flush()  # what it was due still reaches it
            self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)

        return unsubscribe

    def publish(self, event: RequestEvent) -> None:
        if self._batch <= 1:
            for subscriber in self._subscribers:
                subscriber(event)
            return
        held = self._held
        held.append(event)
        if len(held) >= self._batch:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self.flush)

    def flush(self) -> None:
        """Hand every held event to the subscribers now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held = self._held
        if not held:
            return
        self._held = []
        for subscriber in self._subscribers:
            for event in held:
                subscriber(event)
