"""HTTP/1.1 message framing on httptools (llhttp), strict, without I/O.

`RequestReader` and `ResponseReader` take bytes and produce events: a head,
body chunks, and the end of the message. llhttp already refuses most
smuggling vectors; every refusal becomes an `Http1Error` with the status the
client gets and a stable reason string (Envoy-style `http1.*`). Our own
limits (request line, header section, header count) and the syntax of Host and of an
absolute-form target's authority (`proxy.authority`) are checked here.
"""

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httptools

from proxy.authority import absolute_authority, authority_problem, has_userinfo, host_problem

MAX_REQUEST_LINE = 8 * 1024
MAX_HEADER_BYTES = 32 * 1024
MAX_HEADERS = 100
# Bytes a head may take before it is complete: llhttp hands a header line over only once it
# ends, and until then grows it by copying, so an endless line is cut off here.
MAX_HEAD_BYTES = MAX_REQUEST_LINE + MAX_HEADER_BYTES

# What a reason phrase may not hold (RFC 9112 4: HTAB, SP, VCHAR, obs-text).
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

# An inbound proxy's word, on a connection it closes idle, that it read no request on it
# (`downstream.IDLE_CLOSED_RESPONSE`); hop-by-hop, so no app's response passes for it.
IDLE_CLOSED_HEADER = b"vmesh-idle-closed"

# Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
HOP_BY_HOP = frozenset(
    {
        IDLE_CLOSED_HEADER,
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)

# llhttp's messages -> (status, reason); checked in order, first substring wins.
_PARSER_ERRORS = (
    ("can't be present with Content-Length", 400, "http1.content_length_and_chunked_not_allowed"),
    ("Duplicate Content-Length", 400, "http1.duplicate_content_length"),
    ("invalid `Transfer-Encoding`", 501, "http1.invalid_transfer_encoding"),
    ("Content-Length", 400, "http1.invalid_content_length"),
    ("Chunk size overflow", 400, "http1.chunk_size_overflow"),
    ("chunk", 400, "http1.invalid_chunk"),
    ("Unexpected whitespace after header value", 400, "http1.obs_fold_not_allowed"),
    ("whitespace", 400, "http1.invalid_characters"),
    ("header token", 400, "http1.invalid_characters"),
    ("header value char", 400, "http1.invalid_characters"),
    ("LF", 400, "http1.bare_cr_or_lf"),
    ("method", 400, "http1.invalid_method"),
    ("url", 400, "http1.invalid_url"),
    ("version", 505, "http1.invalid_version"),
)


class Http1Error(Exception):
    """Framing the peer got wrong: answer `status` (requests) and close the connection."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.status = status
        self.reason = reason


def _classify(exc: Exception) -> Http1Error:
    message = str(exc)
    if isinstance(exc, httptools.HttpParserUpgrade):
        return Http1Error(501, "http1.upgrade_not_supported", "protocol upgrades are not proxied")
    lowered = message.lower()
    for needle, status, reason in _PARSER_ERRORS:
        if needle.lower() in lowered:
            return Http1Error(status, reason, message)
    return Http1Error(400, "http1.codec_error", message)


# The message classes below are plain classes with their own `__init__` rather than
# dataclasses: a few are made per request, and mypyc compiles these, while a dataclass's
# `__init__` is generated at run time and interpreted.


class RequestHead:
    """Request line and headers (names lower-cased, in arrival order)."""

    __slots__ = (
        "chunked",
        "content_length",
        "headers",
        "keep_alive",
        "method",
        "target",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool = True,
        chunked: bool = False,
        content_length: int | None = None,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.chunked = chunked
        self.content_length = content_length

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header, or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def expects_continue(self) -> bool:
        """The client waits for a 100 (Continue) before it sends the body: `Expect:
        100-continue`, in any case, from an HTTP/1.1 client (RFC 9110 10.1.1: a 1.0 one
        gets no 1xx)."""
        expect = self.header(b"expect")
        return expect is not None and self.version == "1.1" and expect.lower() == b"100-continue"


class ResponseHead:
    """Status line and headers of a response (its version is not kept: the proxy answers
    in HTTP/1.1 whatever the upstream spoke, and asking llhttp for it formats a string)."""

    __slots__ = (
        "chunked",
        "content_length",
        "headers",
        "keep_alive",
        "reason",
        "status",
    )

    def __init__(
        self,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool = True,
        chunked: bool = False,
        content_length: int | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.keep_alive = keep_alive
        self.chunked = chunked
        self.content_length = content_length


class MessageEnd:
    """The current message is complete; `keep_alive` says if the connection may be reused."""

    __slots__ = ("keep_alive",)

    def __init__(self, keep_alive: bool) -> None:
        self.keep_alive = keep_alive


Event = RequestHead | ResponseHead | bytes | MessageEnd


@dataclass
class _Collector:
    """httptools callbacks for one parser; heads and body chunks go to `events`.

    There is no `on_message_begin` (httptools calls only the callbacks a protocol has, and
    that one would be a Python call per message): what a message gathers is reset once it
    is handed on, the headers with the head and the rest when the message ends.
    """

    events: deque[Event] = field(default_factory=deque)
    # bytes, not bytearrays: the first (usually only) piece is kept as it came, not copied
    url: bytes = b""
    reason: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    header_bytes: int = 0
    in_body: bool = False  # the head was handed on; the body (and any trailers) follows
    head_bytes: int = 0  # bytes fed since the last head was complete: at least the next one's
    # bytes fed in the body since its last data: chunk lines, extensions, trailers
    stray_bytes: int = 0
    # the parser that calls these callbacks, asked for what they do not get (method, status)
    parser: Any = None

    def on_url(self, url: bytes) -> None:
        self.url = self.url + url if self.url else url
        if len(self.url) > MAX_REQUEST_LINE:
            raise Http1Error(414, "http1.request_line_too_long")

    def on_status(self, status: bytes) -> None:
        self.reason = self.reason + status if self.reason else status

    def on_header(self, name: bytes, value: bytes) -> None:
        size = self.header_bytes = self.header_bytes + len(name) + len(value) + 4
        if size > MAX_HEADER_BYTES:
            raise Http1Error(431, "http1.headers_too_large")
        headers = self.headers
        if len(headers) >= MAX_HEADERS:
            raise Http1Error(431, "http1.too_many_headers")
        headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        if body:
            self.events.append(body)
            self.stray_bytes = 0


class _HeadResponseDone(Exception):
    """Raised from a callback to stop parsing at the end of a response to HEAD."""


def _drop_last_message(events: deque[Event]) -> None:
    """Take the last whole message (its events back to the message before) out of `events`."""
    if events and isinstance(events[-1], MessageEnd):
        events.pop()
    while events and not isinstance(events[-1], MessageEnd):
        events.pop()


class _Reader:
    """Shared feeding logic of request and response readers."""

    def __init__(
        self, collector: _Collector,
        parser: httptools.HttpRequestParser | httptools.HttpResponseParser,
    ) -> None:
        self._collector = collector
        self._parser = parser
        self.failed = False
        # the parsed events, oldest first: a connection pops them without a call per event
        self.events = collector.events

    def feed(self, data: bytes) -> None:
        """Parse `data`; raises Http1Error on bad framing (the reader is unusable after)."""
        if self.failed:
            raise Http1Error(400, "http1.codec_error", "connection already failed")
        collector = self._collector
        if collector.in_body:
            collector.stray_bytes += len(data)
        else:
            collector.head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except Http1Error:
            self.failed = True
            raise
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self.failed = True
            if isinstance(exc, httptools.HttpParserUpgrade):
                _drop_last_message(self.events)  # llhttp ended it: it is the one refused
            cause = exc.__context__
            if isinstance(cause, Http1Error | _HeadResponseDone):
                raise cause from None
            raise _classify(exc) from None
        if collector.in_body:
            if collector.stray_bytes > MAX_HEAD_BYTES:  # llhttp grows a trailer line by copying
                self.failed = True
                raise Http1Error(431, "http1.trailers_too_large",
                                 f"{MAX_HEAD_BYTES} bytes of chunk lines or trailers without "
                                 "body data")
        elif collector.head_bytes > MAX_HEAD_BYTES:
            self.failed = True
            raise Http1Error(431, "http1.headers_too_large",
                             f"the head is not complete after {MAX_HEAD_BYTES} bytes")

    def next_event(self) -> Event | None:
        """The next parsed event, or None when more bytes are needed."""
        return self._collector.events.popleft() if self._collector.events else None

    @property
    def in_message(self) -> bool:
        """True once a message has begun and not yet ended (bytes are pending)."""
        return self._collector.header_bytes > 0 or bool(self._collector.url)


def _framing(
    headers: list[tuple[bytes, bytes]],
) -> tuple[int, bytes | None, list[bytes] | None, int | None]:
    """Host headers (their count and the last one), transfer codings (None without
    Transfer-Encoding) and Content-Length of a header section, in one pass."""
    hosts = 0
    host: bytes | None = None
    codings: list[bytes] | None = None
    length: bytes | None = None
    for name, value in headers:
        if name == b"host":
            hosts += 1
            host = value
        elif name == b"content-length":
            if length is None:
                length = value
        elif name == b"transfer-encoding":
            if codings is None:
                codings = []
            codings += [coding.strip().lower() for coding in value.split(b",")]
    return hosts, host, codings, int(length) if length is not None else None


def _require_chunked_only(codings: list[bytes] | None) -> None:
    """Refuse any transfer coding but a single `chunked` (llhttp lets `gzip, chunked` pass,
    and the proxy re-frames bodies, so another coding would be silently lost)."""
    if codings is not None and codings != [b"chunked"]:
        raise Http1Error(501, "http1.invalid_transfer_encoding",
                         "only Transfer-Encoding: chunked is supported")


# The methods as `str`, so that the common ones cost a lookup rather than a decode per request.
_METHODS = {
    name.encode(): name
    for name in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
}


def _target_text(url: bytes) -> str:
    """The request target as text; a byte beyond ASCII (refused when the path is normalized)
    becomes U+FFFD."""
    return url.decode("ascii") if url.isascii() else url.decode("ascii", "replace")


def _check_host(host: bytes) -> None:
    """Refuse a Host header that is no authority (RFC 9112 3.2: a 400)."""
    problem = host_problem(host)
    if problem is not None:
        raise Http1Error(400, "http1.invalid_host",
                         f"the Host header {_shown(host)} is no valid authority: {problem}")


def _check_target_authority(url: bytes) -> None:
    """Refuse an absolute-form target whose authority is none (the Host it stands for), or
    carries userinfo (RFC 9110 4.2.4; the answer does not repeat it: it may be a password)."""
    authority = absolute_authority(url)
    if authority is None or (problem := authority_problem(authority)) is None:
        return  # (an "@" is a problem too: userinfo costs a good target nothing)
    if has_userinfo(authority):
        raise Http1Error(400, "http1.userinfo_in_target",
                         "the request target carries userinfo ('...@' before the host), which "
                         "an http(s) URI may not (RFC 9110 4.2.4); send credentials in an "
                         "Authorization header")
    raise Http1Error(400, "http1.invalid_host",
                     f"the authority of {_shown(url)} is no valid authority: {problem}")


def _shown(text: bytes) -> str:
    return "'" + text[:100].decode("ascii", "backslashreplace") + "'"


class _RequestCallbacks(_Collector):
    # the Host value last found valid on this connection: the next request most likely
    # names it again, and a comparison is cheaper than a check
    good_host: bytes = b""

    def on_headers_complete(self) -> None:
        parser = self.parser
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode()
        version = parser.get_http_version()
        hosts, host, codings, length = _framing(self.headers)
        if version != "1.1" and version != "1.0":
            raise Http1Error(505, "http1.invalid_version", f"HTTP/{version} is not HTTP/1.x")
        if version == "1.1" and not hosts:
            raise Http1Error(400, "http1.missing_host", "HTTP/1.1 requests need a Host header")
        if hosts > 1:
            raise Http1Error(400, "http1.multiple_host", "more than one Host header")
        if host is not None and host != self.good_host:
            _check_host(host)
            self.good_host = host
        url = self.url
        if url[0] != 47:  # not origin-form ("/..."): a bytes index, the cheapest test compiled
            _check_target_authority(url)
        target = _target_text(url)
        _require_chunked_only(codings)
        if method == "CONNECT":
            raise Http1Error(405, "http1.connect_not_allowed", "CONNECT tunnels are not proxied")
        self.events.append(
            RequestHead(
                method=method,
                target=target,
                version=version,
                headers=self.headers,
                keep_alive=parser.should_keep_alive(),
                chunked=codings is not None,
                content_length=length,
            )
        )
        self.headers = []
        self.in_body = True
        self.head_bytes = 0

    def on_message_complete(self) -> None:
        # httptools forgets keep-alive once the message is done: read it here
        self.events.append(MessageEnd(self.parser.should_keep_alive()))
        self.url = b""
        self.header_bytes = 0
        self.in_body = False
        self.stray_bytes = 0
        if self.headers:
            self.headers = []  # trailers: not forwarded, and not the next message's headers


class RequestReader(_Reader):
    """Parses requests from a client connection (pipelined requests come out in order)."""

    def __init__(self) -> None:
        callbacks = _RequestCallbacks()
        parser = httptools.HttpRequestParser(callbacks)
        callbacks.parser = parser
        super().__init__(callbacks, parser)


class _ResponseCallbacks(_Collector):
    head_request: bool = False
    # a response has begun and not ended: bytes an upstream sent after the response it
    # owed begin another, which must not reach the next request's caller
    begun: bool = False

    def on_headers_complete(self) -> None:
        parser = self.parser
        _, _, codings, length = _framing(self.headers)
        _require_chunked_only(codings)  # the proxy re-frames: other codings would be lost
        status = parser.get_status_code()
        if not 100 <= status <= 599:
            raise Http1Error(502, "http1.invalid_status", f"status code {status}")
        if _CONTROL.search(self.reason):
            raise Http1Error(502, "http1.invalid_characters",
                             "control characters in the reason phrase")
        self.events.append(
            ResponseHead(
                status=status,
                reason=self.reason,
                headers=self.headers,
                keep_alive=parser.should_keep_alive(),
                chunked=codings is not None,
                content_length=length,
            )
        )
        self.headers = []
        self.reason = b""
        self.in_body = True
        self.head_bytes = 0
        if self.head_request and status >= 200:
            # a response to HEAD has no body whatever its headers say; llhttp cannot be told,
            # so the message ends here and the reader starts a fresh parser for the next one
            self.events.append(MessageEnd(parser.should_keep_alive()))
            self.begun = False
            raise _HeadResponseDone

    def on_message_begin(self) -> None:
        self.begun = True

    def on_message_complete(self) -> None:
        self.events.append(MessageEnd(self.parser.should_keep_alive()))
        self.header_bytes = 0
        self.in_body = False
        self.stray_bytes = 0
        self.begun = False
        if self.headers:
            self.headers = []  # trailers: not forwarded, and not the next message's headers


class ResponseReader(_Reader):
    """Parses one response at a time from an upstream connection."""

    def __init__(self) -> None:
        self._new_parser()

    def _new_parser(self) -> None:
        callbacks = self._callbacks = _ResponseCallbacks()
        parser = httptools.HttpResponseParser(callbacks)
        callbacks.parser = parser
        _Reader.__init__(self, callbacks, parser)

    def expect(self, method: str) -> None:
        """Say which request the next response answers (HEAD responses carry no body)."""
        self._callbacks.head_request = method == "HEAD"

    @property
    def in_message(self) -> bool:
        """True once a response has begun and not yet ended."""
        return self._callbacks.begun

    def feed(self, data: bytes) -> None:
        try:
            super().feed(data)
        except Http1Error:
            raise
        except _HeadResponseDone:
            events = self.events
            self._new_parser()
            self._collector.events = self.events = events


NOT_FORWARDED = HOP_BY_HOP | {b"content-length"}  # the proxy writes the framing itself


def _dropped(name: bytes, dropped: frozenset[bytes]) -> bool:
    """`name` is in `dropped`, or spells one of them with `_` for `-`: CGI, WSGI and many
    frameworks read `vmesh_client_id` as `vmesh-client-id`, so such a spelling would pass
    a header the proxy sets (or strips) off as the real one."""
    return name in dropped or (b"_" in name and name.replace(b"_", b"-") in dropped)


def forwardable_headers(
    headers: list[tuple[bytes, bytes]], dropped: frozenset[bytes] = NOT_FORWARDED
) -> list[tuple[bytes, bytes]]:
    """Drop the names in `dropped` (by default hop-by-hop headers and the framing, which
    the proxy re-does) and every header the Connection header names, but Host, which a
    request cannot go without."""
    kept = [header for header in headers if not _dropped(header[0], dropped)]
    if len(kept) == len(headers) and b"connection" in dropped:
        return kept  # nothing dropped: there is no Connection header naming more
    named = [value for key, value in headers if key == b"connection"]
    if not named:
        return kept
    tokens = {token.strip().lower() for value in named for token in value.split(b",")}
    dropped |= tokens - {b"host"}
    return [header for header in kept if not _dropped(header[0], dropped)]


# A head is joined once from its pieces: names, values and line breaks appended to one list
# (in compiled code, cheaper than a bytes object per header line, or `%` formatting), with
# a buffered body after it, so that a small request leaves in one write.


def _join_head(parts: list[bytes], headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    for name, value in headers:
        parts.append(b"\r\n")
        parts.append(name)
        parts.append(b": ")
        parts.append(value)
    parts.append(b"\r\n\r\n")
    if body:
        parts.append(body)
    return b"".join(parts)


def encode_request_head(
    head: RequestHead, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> bytes:
    """The request line and `headers`, then `body` (a buffered one: one write, one segment)."""
    return _join_head(
        [head.method.encode(), b" ", head.target.encode(), b" HTTP/1.1"], headers, body
    )


_STATUS_LINES: dict[int, bytes] = {}  # `HTTP/1.1 200 ` by status code (three digits: bounded)


def encode_response_head(status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d " % status
    return _join_head([line, reason], headers, b"")


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
