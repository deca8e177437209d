"""A request whose Host header, or absolute-form target, names no valid authority (RFC 3986
3.2, RFC 9110 7.2, RFC 9112 3.2) is refused with 400 `http1.invalid_host` and says what is
wrong; every form the RFCs allow passes."""

import pytest

from proxy.authority import absolute_authority, authority_problem, host_problem
from proxy.http1 import Http1Error, RequestHead, RequestReader


def _request(host: bytes, target: bytes = b"/") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"


@pytest.mark.parametrize(("host", "problem"), [
    (b"web:notaport", "the port 'notaport' is not a number"),
    (b"web:80:80", "the port '80:80' is not a number"),
    (b"web:65536", "the port '65536' is out of range (0-65535)"),
    pytest.param(b"web:" + b"9" * 5000, "out of range", id="web:<5000 digits>"),
    (b"web:-1", "is not a number"),
    (b"we\\b", "'\\' is not allowed in a host name"),
    (b"web/x", "'/' is not allowed in a host name"),
    (b"user@web", "'@' is not allowed in a host name"),
    (b"web%zz", "a '%' in a host name is not followed by two hex digits"),
    (b"caf\xc3\xa9", "'\\xc3' is not allowed in a host name"),
    (b":80", "the host is empty"),
    (b"::1", "the host is empty"),
    (b"[::1", "the IP literal has no closing ']'"),
    (b"[::1]80", "'8' follows the IP literal, not ':'"),
    (b"[not:an:address]", "[not:an:address] is no IPv6 address"),
    (b"[fe80::1%25eth0]", "an IPv6 zone is not allowed in a URI"),
])
def test_a_host_header_that_is_no_authority_is_refused(host: bytes, problem: str) -> None:
    with pytest.raises(Http1Error) as caught:
        RequestReader().feed(_request(host))
    assert (caught.value.status, caught.value.reason) == (400, "http1.invalid_host")
    assert problem in str(caught.value)
    assert str(caught.value).startswith("the Host header '")


@pytest.mark.parametrize("host", [
    b"web", b"web.mesh", b"WEB.mesh.:4140", b"web:", b"web:0", b"web:65535", b"web:000080",
    b"127.0.0.1:8080", b"[::1]", b"[::1]:4140", b"[::ffff:10.0.0.1]:80", b"[v7.x:y]",
    b"my_app~1", b"%77eb", b"a!$&'()*+,;=b", b"web  ", b"",
])
def test_every_host_the_rfcs_allow_passes(host: bytes) -> None:
    reader = RequestReader()
    reader.feed(_request(host))
    head = reader.next_event()
    assert isinstance(head, RequestHead) and head.header(b"host") == host


@pytest.mark.parametrize(("target", "problem"), [
    (b"http://web:notaport/x", "the port 'notaport' is not a number"),
    (b"HTTP://web:99999/", "the port '99999' is out of range"),
    (b"http://[::1/x", "the IP literal has no closing ']'"),
    (b"http://[zz]/x", "[zz] is no IPv6 address"),
    (b"http://web]/x", "']' is not allowed in a host name"),
    (b"http:///x", "the host is empty"),
    (b"https://web:x/", "the port 'x' is not a number"),
])
def test_an_absolute_form_target_without_a_valid_authority_is_refused(
    target: bytes, problem: str
) -> None:
    with pytest.raises(Http1Error) as caught:
        RequestReader().feed(_request(b"web", target))
    assert (caught.value.status, caught.value.reason) == (400, "http1.invalid_host")
    assert problem in str(caught.value)


@pytest.mark.parametrize("target", [
    b"http://web/x", b"http://web:80", b"http://web.mesh:80/", b"http://web?q=1",
    b"http://[::1]:4140/", b"/origin/form", b"*",
])
def test_targets_the_rfcs_allow_pass(target: bytes) -> None:
    reader = RequestReader()
    reader.feed(b"OPTIONS " + target + b" HTTP/1.1\r\nHost: web\r\n\r\n")
    assert isinstance(reader.next_event(), RequestHead)


def test_a_host_found_good_on_a_connection_does_not_let_a_bad_one_pass() -> None:
    reader = RequestReader()
    reader.feed(_request(b"web:80") + _request(b"web:80"))
    with pytest.raises(Http1Error) as caught:
        reader.feed(_request(b"web:8o"))
    assert caught.value.reason == "http1.invalid_host"


def test_the_authority_of_a_target_is_what_lies_between_scheme_and_path() -> None:
    assert absolute_authority(b"http://web:1/x?y#z") == b"web:1"
    assert absolute_authority(b"HTTPS://web?x") == b"web"
    assert absolute_authority(b"/x") is None
    assert absolute_authority(b"ftp://web/") is None
    assert host_problem(b"web:80") is None and authority_problem(b"web:80") is None
