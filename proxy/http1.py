"""Sans-IO HTTP/1.1 message framing on httptools, strict about ambiguous input.

`MessageReader.feed(data)` returns the events the bytes completed: `Head`,
`Body` pieces and `End`. Anything ambiguous or oversized raises
`ProtocolError` with the status to answer and a stable reason string (after
Envoy's `http1.*` details); the caller answers it and closes the connection,
so nothing after a bad message is ever parsed.
"""

from dataclasses import dataclass

import httptools

MAX_REQUEST_LINE = 8192
MAX_HEADER_BYTES = 32 * 1024
MAX_HEADERS = 100

# RFC 9110 §7.6.1 plus the ones every proxy strips.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
    "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
})

Headers = list[tuple[str, str]]


class ProtocolError(Exception):
    """A message that must be refused: `status` to answer, `reason` for logs and `vmesh-error`."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class Head:
    """Start line and headers of a request (method, target) or a response (status)."""

    version: str
    headers: Headers
    method: str = ""
    target: str = ""
    status: int = 0
    chunked: bool = False
    content_length: int | None = None

    def header(self, name: str) -> str | None:
        """The first value of header `name` (lower case), if present."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(slots=True)
class Body:
    data: bytes


@dataclass(slots=True)
class End:
    """The message is complete; `keep_alive` says whether the connection may carry another."""

    keep_alive: bool


Event = Head | Body | End

_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _check_value(value: bytes) -> None:
    for byte in value:
        if (byte < 0x20 and byte != 0x09) or byte == 0x7F:
            raise ProtocolError(400, "http1.invalid_characters")


class MessageReader:
    """Incremental parser of requests (`response=False`) or responses on one connection."""

    def __init__(self, response: bool = False) -> None:
        self._response = response
        parser_type = httptools.HttpResponseParser if response else httptools.HttpRequestParser
        self._parser = parser_type(self)
        self._events: list[Event] = []
        self._failure: ProtocolError | None = None
        self._reset()
        self.head_request = False

    def _reset(self) -> None:
        self._url = b""
        self._headers: Headers = []
        self._name = b""
        self._value = b""
        self._header_bytes = 0
        self._in_value = False

    def feed(self, data: bytes) -> list[Event]:
        """Parse `data`; returns the completed events in order."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise ProtocolError(501, "http1.upgrade_not_supported") from None
        except httptools.HttpParserError as exc:
            if self._failure is not None:
                raise self._failure from None
            raise ProtocolError(*_classify(str(exc))) from None
        events, self._events = self._events, []
        return events

    def feed_eof(self) -> list[Event]:
        """The peer closed: a response read until close ends here."""
        if self._response and self._open_until_close:
            self._open_until_close = False
            return [End(keep_alive=False)]
        return []

    _open_until_close = False

    def _fail(self, status: int, reason: str) -> None:
        self._failure = ProtocolError(status, reason)
        raise self._failure

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_REQUEST_LINE:
            self._fail(414, "http1.request_line_too_long")

    def on_header(self, name: bytes, value: bytes) -> None:
        # httptools hands whole name/value pairs (it buffers partial ones itself).
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > MAX_HEADER_BYTES:
            self._fail(431, "http1.headers_too_large")
        if len(self._headers) >= MAX_HEADERS:
            self._fail(431, "http1.too_many_headers")
        if not name or any(byte not in _TOKEN for byte in name):
            self._fail(400, "http1.invalid_characters")
        try:
            _check_value(value)
        except ProtocolError as exc:
            self._failure = exc
            raise
        self._headers.append((name.decode("ascii").lower(), value.decode("latin-1").strip(" \t")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        version = parser.get_http_version()
        head = Head(version=version, headers=self._headers)
        if self._response:
            head.status = parser.get_status_code()
        else:
            head.method = parser.get_method().decode("ascii")
            head.target = self._url.decode("latin-1")
        lengths = {value for key, value in self._headers if key == "content-length"}
        encodings = [value for key, value in self._headers if key == "transfer-encoding"]
        if encodings and lengths:
            self._fail(400, "http1.content_length_and_chunked_not_allowed")
        if len(lengths) > 1:
            self._fail(400, "http1.content_length_mismatch")
        if lengths:
            (length,) = lengths
            if not length.isdigit() or len(length) > 18:
                self._fail(400, "http1.invalid_content_length")
            head.content_length = int(length)
        if encodings:
            codings = [c.strip().lower() for value in encodings for c in value.split(",")]
            if codings != ["chunked"]:
                self._fail(501, "http1.invalid_transfer_encoding")
            head.chunked = True
        if self._response:
            bodiless = self.head_request or head.status in (204, 304) or head.status < 200
            if bodiless:
                head.chunked, head.content_length = False, 0
            elif not head.chunked and head.content_length is None:
                self._open_until_close = True
        elif not head.chunked and head.content_length is None:
            head.content_length = 0
        self._events.append(head)
        if self._response and (self.head_request or head.status in (204, 304)):
            # The parser cannot know a HEAD response has no body; tell it.
            return 1  # type: ignore[return-value]

    def on_body(self, body: bytes) -> None:
        self._events.append(Body(bytes(body)))

    def on_message_complete(self) -> None:
        self._open_until_close = False
        self._events.append(End(keep_alive=self._parser.should_keep_alive()))


def _classify(message: str) -> tuple[int, str]:
    """Map a parser error message to a status and a stable reason."""
    text = message.lower()
    if "content-length" in text and ("transfer-encoding" in text or "can't be present" in text):
        return 400, "http1.content_length_and_chunked_not_allowed"
    if "duplicate content-length" in text:
        return 400, "http1.content_length_mismatch"
    if "transfer-encoding" in text:
        return 501, "http1.invalid_transfer_encoding"
    if "chunk size" in text or "chunk" in text:
        return 400, "http1.invalid_chunk_size"
    if "content-length" in text:
        return 400, "http1.invalid_content_length"
    if "lf" in text or "cr" in text or "character" in text or "header" in text:
        return 400, "http1.invalid_characters"
    if "method" in text:
        return 400, "http1.invalid_method"
    if "url" in text or "uri" in text:
        return 400, "http1.invalid_url"
    if "version" in text:
        return 505, "http1.invalid_version"
    return 400, "http1.codec_error"


def strip_hop_by_hop(headers: Headers) -> Headers:
    """Headers without hop-by-hop ones, including those named in `Connection`."""
    named = {
        token.strip().lower()
        for key, value in headers if key == "connection"
        for token in value.split(",")
    }
    return [(k, v) for k, v in headers if k not in HOP_BY_HOP and k not in named]


def encode_request_head(method: str, target: str, headers: Headers) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def encode_response_head(status: int, reason: str, headers: Headers) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def framing_headers(head: Head, until_close_as_chunked: bool = True) -> tuple[Headers, bool]:
    """The framing header to send with `head`'s body, and whether to chunk it ourselves."""
    if head.chunked:
        return [("transfer-encoding", "chunked")], True
    if head.content_length is not None:
        return [("content-length", str(head.content_length))], False
    return ([("transfer-encoding", "chunked")], True) if until_close_as_chunked else ([], False)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


LAST_CHUNK = b"0\r\n\r\n"
