"""The server name (SNI) of a TLS ClientHello, read from the first bytes of a connection.

A mesh gateway routes a connection by the name its client asked for, without
terminating TLS (proxy/gateway.py): it reads the ClientHello (RFC 8446 4.1.2,
the same layout in TLS 1.2, RFC 5246 7.4.1.2) as it arrives and finds the
`server_name` extension (RFC 6066 3). This is a pure function of the bytes read
so far: more bytes may be needed (`None`), the bytes are a ClientHello
(`Hello`), or they can never become one (`BadHello`, with a stable reason).

A ClientHello may span several handshake records; they are joined, up to
`MAX_HELLO_BYTES` read in all, beyond which the hello is refused rather than
buffered without bound.
"""

from dataclasses import dataclass

MAX_HELLO_BYTES = 16 * 1024 + 5  # one full record: a ClientHello is far smaller in practice
MAX_SERVER_NAME = 253  # a DNS name's longest text form

_RECORD_HEADER = 5
_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_SERVER_NAME = 0x0000
_HOST_NAME = 0x00


class BadHello(Exception):
    """Bytes that are not, and can never become, a ClientHello we route: `reason` is stable
    (`gateway.not_tls`, `gateway.malformed_hello`, `gateway.hello_too_large`)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Hello:
    """A whole ClientHello: the host name it asks for (lowercase; None when it names none)."""

    server_name: str | None


def _malformed(detail: str) -> BadHello:
    return BadHello("gateway.malformed_hello", f"the ClientHello is malformed: {detail}")


def parse(data: bytes) -> Hello | None:
    """The ClientHello at the start of `data`; None while `data` is a prefix of one (read
    more); BadHello when it is not TLS, not a ClientHello, malformed, or over
    `MAX_HELLO_BYTES`."""
    handshake = bytearray()
    offset = 0
    while True:
        if len(data) - offset < _RECORD_HEADER:
            _check_prefix(data[offset:])
            _check_size(data)
            return None
        kind, major, length = data[offset], data[offset + 1], int.from_bytes(
            data[offset + 3:offset + 5], "big")
        if kind != _HANDSHAKE or major != 3:
            raise BadHello("gateway.not_tls", "the first bytes are no TLS handshake record")
        if length == 0 or length > 2**14:
            raise _malformed(f"a record of {length} bytes")
        fragment = data[offset + _RECORD_HEADER:offset + _RECORD_HEADER + length]
        handshake += fragment
        if handshake and handshake[0] != _CLIENT_HELLO:
            raise BadHello("gateway.not_tls", "the first handshake message is no ClientHello")
        size = int.from_bytes(handshake[1:4], "big") if len(handshake) >= 4 else None
        if size is not None and 4 + size > MAX_HELLO_BYTES:
            raise BadHello("gateway.hello_too_large",
                           f"a ClientHello of {size} bytes (at most {MAX_HELLO_BYTES})")
        if len(fragment) < length:
            _check_size(data)
            return None
        offset += _RECORD_HEADER + length
        if size is not None and len(handshake) >= 4 + size:
            return Hello(_server_name(bytes(handshake[4:4 + size])))


def _check_prefix(header: bytes) -> None:
    """BadHello when even the first bytes of a record header are wrong."""
    if header and header[0] != _HANDSHAKE:
        raise BadHello("gateway.not_tls", "the first bytes are no TLS handshake record")
    if len(header) > 1 and header[1] != 3:
        raise BadHello("gateway.not_tls", "the first bytes are no TLS handshake record")


def _check_size(data: bytes) -> None:
    """BadHello when `data`, still no whole ClientHello, is as long as one may be."""
    if len(data) >= MAX_HELLO_BYTES:
        raise BadHello("gateway.hello_too_large",
                       f"no whole ClientHello in the first {MAX_HELLO_BYTES} bytes")


class _Reader:
    """Reads the length-prefixed fields of a ClientHello body; `_malformed` past its end."""

    __slots__ = ("data", "offset")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int, what: str) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise _malformed(f"{what} runs past its end")
        chunk = self.data[self.offset:end]
        self.offset = end
        return chunk

    def number(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def vector(self, length_size: int, what: str) -> bytes:
        return self.take(self.number(length_size, what), what)

    @property
    def left(self) -> int:
        return len(self.data) - self.offset


def _server_name(body: bytes) -> str | None:
    """The host name of a ClientHello body's server_name extension; None without one."""
    hello = _Reader(body)
    hello.take(2 + 32, "version and random")
    hello.vector(1, "session id")
    suites = hello.vector(2, "cipher suites")
    if not suites or len(suites) % 2:
        raise _malformed("cipher suites of an odd or zero length")
    hello.vector(1, "compression methods")
    if not hello.left:
        return None  # no extensions at all (TLS 1.2 allows it)
    extensions = _Reader(hello.vector(2, "extensions"))
    if hello.left:
        raise _malformed("bytes after the extensions")
    while extensions.left:
        kind = extensions.number(2, "an extension type")
        content = extensions.vector(2, "an extension")
        if kind == _SERVER_NAME:
            return _host_name(_Reader(content))
    return None


def _host_name(extension: _Reader) -> str:
    names = _Reader(extension.vector(2, "the server name list"))
    if extension.left:
        raise _malformed("bytes after the server name list")
    while names.left:
        kind = names.number(1, "a server name type")
        name = names.vector(2, "a server name")
        if kind != _HOST_NAME:
            continue
        if not name or len(name) > MAX_SERVER_NAME:
            raise _malformed(f"a host name of {len(name)} bytes")
        try:
            text = name.decode("ascii")
        except UnicodeDecodeError:
            raise _malformed("a host name that is not ASCII") from None
        if not text.isprintable() or " " in text:
            raise _malformed("a host name with spaces or control characters")
        return text.lower().removesuffix(".")
    raise _malformed("a server name extension without a host name")
