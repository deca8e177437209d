"""A mesh gateway routes by the server name of the ClientHello it reads, never terminating TLS:
real hellos (Python's ssl, TLS 1.3 and 1.2) give their SNI, a hello cut anywhere asks for more
bytes, and garbage, oversized or malformed input is refused with a stable reason, never an
exception of another kind."""

import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.clienthello import MAX_HELLO_BYTES, BadHello, Hello, parse
from tests.support import client_hello


def in_records(hello: bytes, size: int) -> bytes:
    """The handshake message of `hello` split over records of at most `size` bytes."""
    message = hello[5:]
    return b"".join(b"\x16\x03\x01" + len(part).to_bytes(2, "big") + part
                    for part in (message[i:i + size] for i in range(0, len(message), size)))


HELLO = client_hello("api.east.vmesh.local")


@pytest.mark.parametrize("maximum", [None, ssl.TLSVersion.TLSv1_2])
def test_a_real_client_hello_gives_its_server_name(maximum: ssl.TLSVersion | None) -> None:
    assert parse(client_hello("api.east.vmesh.local", maximum)) == Hello("api.east.vmesh.local")


def test_a_hello_without_a_server_name_says_so() -> None:
    assert parse(client_hello(None)) == Hello(None)


def test_the_name_is_lowercase_without_its_final_dot() -> None:
    assert parse(client_hello("API.East.vmesh.local.")) == Hello("api.east.vmesh.local")


def test_every_cut_of_a_hello_asks_for_more_bytes() -> None:
    for end in range(len(HELLO)):
        assert parse(HELLO[:end]) is None, end


def test_a_hello_spread_over_several_records_is_joined() -> None:
    spread = in_records(HELLO, 7)
    assert parse(spread) == Hello("api.east.vmesh.local")
    assert parse(spread[:-1]) is None


def test_bytes_after_the_hello_do_not_matter() -> None:
    assert parse(HELLO + b"\x14\x03\x03\x00\x01\x01") == Hello("api.east.vmesh.local")


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: api\r\n\r\n",  # plain HTTP
    b"\x17\x03\x03\x00\x10" + bytes(16),  # application data, not a handshake
    b"\x16\x02\x00\x00\x05hello",  # SSL 2-ish version byte
    b"\x16\x03\x03\x00\x04\x02\x00\x00\x00",  # a ServerHello
    b"\x00",
    b"\x16\x07",
])
def test_what_is_not_a_client_hello_is_refused_as_not_tls(data: bytes) -> None:
    with pytest.raises(BadHello) as refused:
        parse(data)
    assert refused.value.reason == "gateway.not_tls"


def test_a_hello_that_claims_more_than_the_limit_is_refused_at_once() -> None:
    claims = b"\x16\x03\x01\x40\x00\x01" + (1 << 20).to_bytes(3, "big")
    with pytest.raises(BadHello) as refused:
        parse(claims)
    assert refused.value.reason == "gateway.hello_too_large"


def test_records_that_never_complete_a_hello_are_refused_at_the_limit() -> None:
    # a hello of 10000 bytes, within the limit, in records of 5 bytes: 20000 bytes on the wire
    header = b"\x01" + (10_000).to_bytes(3, "big")
    trickle = in_records(HELLO[:5] + header + bytes(10_000), 5)
    assert parse(trickle[:MAX_HELLO_BYTES - 1]) is None
    with pytest.raises(BadHello) as refused:
        parse(trickle[:MAX_HELLO_BYTES])
    assert refused.value.reason == "gateway.hello_too_large"


def with_body(body: bytes) -> bytes:
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(message).to_bytes(2, "big") + message


def sni_extension(name: bytes, kind: int = 0) -> bytes:
    entry = bytes([kind]) + len(name).to_bytes(2, "big") + name
    listing = len(entry).to_bytes(2, "big") + entry
    return b"\x00\x00" + len(listing).to_bytes(2, "big") + listing


def hello_body(extensions: bytes) -> bytes:
    return (b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + len(extensions).to_bytes(2, "big") + extensions)


def test_a_hand_made_hello_with_extensions_before_the_name_is_read() -> None:
    other = b"\x00\x0b\x00\x02\x01\x00"  # ec_point_formats
    assert parse(with_body(hello_body(other + sni_extension(b"web.east.td")))) == \
        Hello("web.east.td")


@pytest.mark.parametrize(("body", "why"), [
    (b"\x03\x03" + bytes(10), "version and random"),
    (hello_body(b"")[:36] + b"\x00\x05\x13", "cipher suites"),  # a vector past its end
    (b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x03\x13\x01\x13" + b"\x01\x00", "odd"),
    (hello_body(sni_extension(b"")), "host name of 0 bytes"),
    (hello_body(sni_extension(b"a" * 300)), "host name of 300 bytes"),
    (hello_body(sni_extension("ä.east".encode())), "not ASCII"),
    (hello_body(sni_extension(b"a\x00b")), "control characters"),
    (hello_body(sni_extension(b"x", kind=1)), "without a host name"),
    (hello_body(b"\x00\x00\x00\x09" + bytes(9))[:-1], "past its end"),
])
def test_a_malformed_hello_is_refused_with_what_is_wrong(body: bytes, why: str) -> None:
    with pytest.raises(BadHello) as refused:
        parse(with_body(body))
    assert refused.value.reason == "gateway.malformed_hello"
    assert why in str(refused.value)


@given(st.binary(max_size=600))
def test_any_bytes_give_more_hello_or_a_reason(data: bytes) -> None:
    try:
        result = parse(data)
    except BadHello as refused:
        assert refused.reason in {
            "gateway.not_tls", "gateway.malformed_hello", "gateway.hello_too_large"}
        return
    assert result is None or isinstance(result, Hello)


@given(st.integers(min_value=0, max_value=len(HELLO) - 1), st.binary(min_size=1, max_size=40))
def test_a_real_hello_with_bytes_changed_never_fails_otherwise(at: int, noise: bytes) -> None:
    changed = HELLO[:at] + noise + HELLO[at + len(noise):]
    try:
        result = parse(changed)
    except BadHello:
        return
    assert result is None or isinstance(result, Hello)
