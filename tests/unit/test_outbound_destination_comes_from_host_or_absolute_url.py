"""The outbound proxy finds the mesh service from the Host header or an absolute-form URL;
a per-upstream TCP listener's HTTP connection goes to its own service whatever those say."""

import pytest

from proxy.http1 import Http1Error, ResponseReader
from proxy.outbound import destination
from tests.support import request_head


@pytest.mark.parametrize(
    ("raw", "service", "target"),
    [
        (b"GET /a HTTP/1.1\r\nHost: web\r\n\r\n", "web", "/a"),
        (b"GET /a HTTP/1.1\r\nHost: web.mesh\r\n\r\n", "web", "/a"),
        (b"GET /a HTTP/1.1\r\nHost: WEB.mesh.:4140\r\n\r\n", "web", "/a"),
        (b"GET http://web/x?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", "web", "/x?q=1"),
        (b"GET http://web.mesh:80 HTTP/1.1\r\nHost: web\r\n\r\n", "web", "/"),
        # the scheme is case-insensitive (RFC 9110 4.2.3)
        (b"GET HTTP://web/x HTTP/1.1\r\nHost: other\r\n\r\n", "web", "/x"),
        (b"GET Http://Web.Mesh/ HTTP/1.1\r\nHost: other\r\n\r\n", "web", "/"),
    ],
)
def test_service_and_origin_form_target(raw: bytes, service: str, target: str) -> None:
    found = destination(request_head(raw))
    assert (found.service, found.target) == (service, target)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"GET https://web/ HTTP/1.1\r\nHost: web\r\n\r\n",
         "http1.https_url_on_plaintext_connection"),
        (b"GET HTTPS://web/ HTTP/1.1\r\nHost: web\r\n\r\n",
         "http1.https_url_on_plaintext_connection"),
        (b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "http1.unknown_authority"),
        (b"GET / HTTP/1.1\r\nHost: \r\n\r\n", "http1.unknown_authority"),
    ],
)
def test_requests_for_no_mesh_service_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(Http1Error) as caught:
        destination(request_head(raw))
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("raw", "authority", "target"),
    [
        (b"GET /a HTTP/1.1\r\nHost: 127.0.0.1:5432\r\n\r\n", "127.0.0.1:5432", "/a"),
        (b"GET /a HTTP/1.1\r\nHost: web\r\n\r\n", "web", "/a"),
        (b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n", "example.com", "/a"),
        (b"GET http://web/x?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", "web", "/x?q=1"),
        (b"GET /a HTTP/1.0\r\n\r\n", "db", "/a"),
    ],
)
def test_a_fixed_service_is_the_destination_whatever_the_request_names(
    raw: bytes, authority: str, target: str
) -> None:
    found = destination(request_head(raw), fixed_service="db")
    assert (found.service, found.authority, found.target) == ("db", authority, target)


def test_a_fixed_service_still_refuses_https_urls_in_plain_text() -> None:
    with pytest.raises(Http1Error) as caught:
        destination(request_head(b"GET https://db/ HTTP/1.1\r\nHost: db\r\n\r\n"), "db")
    assert caught.value.reason == "http1.https_url_on_plaintext_connection"


def test_upstream_response_with_a_coding_besides_chunked_is_refused() -> None:
    reader = ResponseReader()
    reader.expect("GET")
    with pytest.raises(Http1Error) as caught:
        reader.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
    assert caught.value.reason == "http1.invalid_transfer_encoding"
