"""Protocol detection on the first bytes of a connection: a strict HTTP/1.x request line is
HTTP, anything that cannot begin one is opaque at once, a partial line waits for more."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.detect import METHODS, Protocol, detect
from proxy.http1 import MAX_REQUEST_LINE, RequestHead, RequestReader

HTTP, OPAQUE, NEED_MORE = Protocol.HTTP, Protocol.OPAQUE, Protocol.NEED_MORE

# the first bytes of a TLS 1.2+ ClientHello record: handshake, version 3.1, length, type 1
CLIENT_HELLO = bytes.fromhex("160301020001") + b"\x00\x01\xfc\x03\x03" + bytes(32)
# a Postgres StartupMessage: length, protocol 3.0, then key/value pairs
_PARAMS = b"user\x00app\x00database\x00db\x00\x00"
POSTGRES_STARTUP = struct.pack("!ii", 8 + len(_PARAMS), 196608) + _PARAMS


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"GET /items?x=1 HTTP/1.1\r\nHost: db\r\n\r\n",
        b"POST /upload HTTP/1.0\r\ncontent-length: 3\r\n\r\nabc",
        b"OPTIONS * HTTP/1.1\r\n",
        b"GET http://api/x HTTP/1.1\r\n",
        b"PATCH /a HTTP/1.1\r\n",
    ],
)
def test_a_complete_request_line_is_http(data: bytes) -> None:
    assert detect(data) is HTTP


@pytest.mark.parametrize(
    "data",
    [b"", b"G", b"GE", b"GET", b"GET ", b"GET /ite", b"GET /items ", b"GET / HTTP/1",
     b"GET / HTTP/1.", b"GET / HTTP/1.1", b"GET / HTTP/1.1\r", b"DELE", b"OPTIONS *"],
)
def test_a_partial_request_line_waits_for_more(data: bytes) -> None:
    assert detect(data) is NEED_MORE


@pytest.mark.parametrize(
    "data",
    [
        CLIENT_HELLO,
        CLIENT_HELLO[:1],  # one byte of a ClientHello is enough
        POSTGRES_STARTUP,
        POSTGRES_STARTUP[:4],
        b"\x00\xff\x13binary junk",
        b"get / HTTP/1.1\r\n",  # methods are case-sensitive
        b"GETS / HTTP/1.1\r\n",
        b"FETCH / HTTP/1.1\r\n",
        b"GET  / HTTP/1.1\r\n",  # one space, not two
        b"GET / HTTP/2.0\r\n",
        b"GET / HTTP/1.2\r\n",  # the parser would refuse it
        b"GET / HTTP/1.1 \r\n",
        b"GET / HTTP/1.x",
        b"GET /\r\n",  # HTTP/0.9 is not served
        b"GET /a\tb HTTP/1.1\r\n",
        b"GET / HTTP/1.1\n",  # a bare LF ends no request line
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"EHLO mail.example\r\n",  # a client that speaks first, but not HTTP
    ],
)
def test_bytes_that_cannot_begin_a_request_line_are_opaque(data: bytes) -> None:
    assert detect(data) is OPAQUE


def test_a_first_line_longer_than_the_limit_is_opaque() -> None:
    long_target = b"/" + b"a" * MAX_REQUEST_LINE
    assert detect(b"GET " + long_target) is OPAQUE
    assert detect(b"GET " + long_target + b" HTTP/1.1\r\n") is OPAQUE
    fitting = b"GET /" + b"a" * (MAX_REQUEST_LINE - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
    assert len(fitting) == MAX_REQUEST_LINE
    assert detect(fitting + b"\r") is NEED_MORE
    assert detect(fitting + b"\r\n") is HTTP


targets = st.binary(min_size=1, max_size=40).map(lambda b: bytes(0x21 + x % 94 for x in b))
request_lines = st.builds(
    lambda method, target, minor: b"%s %s HTTP/1.%d\r\n" % (method, target, minor),
    st.sampled_from(METHODS), targets, st.integers(0, 1),
)
origin_form_lines = st.builds(
    lambda method, target, minor: b"%s /%s HTTP/1.%d\r\n" % (method, target, minor),
    st.sampled_from([m for m in METHODS if m != b"CONNECT"]), targets, st.integers(0, 1),
)


@given(request_lines, st.binary(max_size=40))
def test_every_prefix_of_a_request_line_waits_and_the_whole_line_is_http(
    line: bytes, rest: bytes
) -> None:
    for cut in range(len(line)):
        assert detect(line[:cut]) is NEED_MORE, line[:cut]
    assert detect(line + rest) is HTTP


@given(st.one_of(st.binary(max_size=80), request_lines.map(lambda b: b[:-2] + b"\r\n")),
       st.binary(max_size=80), st.integers(4, 64))
def test_a_verdict_never_changes_with_more_bytes(data: bytes, more: bytes, limit: int) -> None:
    first = detect(data, limit)
    if first is not NEED_MORE:
        assert detect(data + more, limit) is first


@given(st.binary(max_size=200), st.integers(4, 64))
def test_detection_never_waits_beyond_the_line_limit(data: bytes, limit: int) -> None:
    padded = data + b"x" * (limit + 2)
    assert detect(padded, limit) is not NEED_MORE


@given(origin_form_lines)
def test_what_detection_calls_http_the_request_parser_reads(line: bytes) -> None:
    """For origin-form targets (others get the HTTP stack's 400, CONNECT its 405)."""
    assert detect(line) is HTTP
    reader = RequestReader()
    reader.feed(line + b"Host: db\r\n\r\n")
    head = reader.next_event()
    assert isinstance(head, RequestHead)
    assert line.startswith(head.method.encode() + b" " + head.target.encode() + b" ")
