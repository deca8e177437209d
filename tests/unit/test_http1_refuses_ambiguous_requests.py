"""The HTTP/1.1 reader refuses ambiguous or oversized requests with a stable reason,
however the bytes are split, and keeps pipelined requests in order."""

import pytest

from proxy.http1 import (
    Http1Error,
    MessageEnd,
    RequestHead,
    RequestReader,
    ResponseHead,
    ResponseReader,
    forwardable_headers,
)

HOST = b"POST / HTTP/1.1\r\nHost: a\r\n"
BAD = {
    "cl_and_te": (HOST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                  "http1.content_length_and_chunked_not_allowed"),
    "differing_cl": (HOST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\n", 400,
                     "http1.duplicate_content_length"),
    "control_char": (b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n", 400, "http1.invalid_characters"),
    "space_in_name": (b"GET / HTTP/1.1\r\nHo st: ab\r\n\r\n", 400, "http1.invalid_characters"),
    "obs_fold": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  c\r\n\r\n", 400,
                 "http1.obs_fold_not_allowed"),
    "bare_cr": (b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400, "http1.bare_cr_or_lf"),
    "long_line": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414,
                  "http1.request_line_too_long"),
    "big_headers": (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 400)
                                                      for i in range(90)) + b"\r\n",
                    431, "http1.headers_too_large"),
    "many_headers": (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(150))
                     + b"\r\n", 431, "http1.too_many_headers"),
    "te_gzip": (HOST + b"Transfer-Encoding: gzip\r\n\r\n", 501, "http1.invalid_transfer_encoding"),
    "te_gzip_chunked": (HOST + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501,
                        "http1.invalid_transfer_encoding"),
    "te_chunked_twice": (HOST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                         501, "http1.invalid_transfer_encoding"),
    "chunk_overflow": (HOST + b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFFF\r\n", 400,
                       "http1.chunk_size_overflow"),
    "upgrade": (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                501, "http1.upgrade_not_supported"),
    "http2_request_line": (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "http1.invalid_version"),
    # methods are case-sensitive (RFC 9110 9.1): `delete` would pass a rule on DELETE
    "lowercase_method": (b"delete / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "http1.invalid_method"),
}


def _drain(reader: RequestReader | ResponseReader) -> list[object]:
    events = []
    while (event := reader.next_event()) is not None:
        events.append(event)
    return events


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_request_is_refused_with_status_and_reason(case: str) -> None:
    data, status, reason = BAD[case]
    with pytest.raises(Http1Error) as caught:
        RequestReader().feed(data)
    assert (caught.value.status, caught.value.reason) == (status, reason)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_request_is_refused_when_fed_byte_by_byte(case: str) -> None:
    data, status, reason = BAD[case]
    reader = RequestReader()
    with pytest.raises(Http1Error) as caught:
        for i in range(len(data)):
            reader.feed(data[i:i + 1])
    assert (caught.value.status, caught.value.reason) == (status, reason)


def test_reader_stays_failed_after_a_refusal() -> None:
    reader = RequestReader()
    with pytest.raises(Http1Error):
        reader.feed(BAD["cl_and_te"][0])
    with pytest.raises(Http1Error):
        reader.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")


def test_pipelined_requests_come_out_in_order_with_their_bodies() -> None:
    reader = RequestReader()
    reader.feed(HOST.replace(b"/", b"/a", 1) + b"Transfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n")
    events = _drain(reader)
    assert [e.target for e in events if isinstance(e, RequestHead)] == ["/a", "/b"]
    assert b"".join(e for e in events if isinstance(e, bytes)) == b"abc"
    assert [e.keep_alive for e in events if isinstance(e, MessageEnd)] == [True, True]


def test_http10_request_without_keep_alive_ends_the_connection() -> None:
    reader = RequestReader()
    reader.feed(b"GET / HTTP/1.0\r\n\r\n")
    end = _drain(reader)[-1]
    assert isinstance(end, MessageEnd) and not end.keep_alive


def test_response_with_content_length_is_framed() -> None:
    reader = ResponseReader()
    reader.expect("GET")
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    events = _drain(reader)
    assert isinstance(events[0], ResponseHead) and events[0].status == 200
    assert events[1] == b"hi"
    assert isinstance(events[2], MessageEnd) and events[2].keep_alive and len(events) == 3


def test_hop_by_hop_headers_and_those_named_in_connection_are_not_forwarded() -> None:
    headers = [(b"connection", b"keep-alive, x-secret"), (b"x-secret", b"1"),
               (b"keep-alive", b"5"), (b"te", b"trailers"), (b"x-kept", b"1")]
    assert forwardable_headers(headers) == [(b"x-kept", b"1")]


def test_a_header_line_that_never_ends_is_refused_at_the_head_limit() -> None:
    reader = RequestReader()
    reader.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ")
    with pytest.raises(Http1Error) as caught:
        for _ in range(100):  # 6.4 MiB of one header value, if nothing stopped it
            reader.feed(b"v" * 65536)
    assert (caught.value.status, caught.value.reason) == (431, "http1.headers_too_large")


def test_a_large_body_is_not_taken_for_a_head() -> None:
    reader = RequestReader()
    reader.feed(HOST + b"Content-Length: 1048576\r\n\r\n")
    for _ in range(16):
        reader.feed(b"b" * 65536)
    events = _drain(reader)
    assert sum(len(e) for e in events if isinstance(e, bytes)) == 1048576
    assert isinstance(events[-1], MessageEnd)


def test_trailers_are_not_carried_into_the_next_response() -> None:
    reader = ResponseReader()
    reader.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n"
                b"0\r\nSet-Cookie: session=alice\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    heads = [e.headers for e in _drain(reader) if isinstance(e, ResponseHead)]
    assert heads == [[(b"transfer-encoding", b"chunked")], [(b"content-length", b"2")]]


def test_trailers_are_not_carried_into_the_next_request() -> None:
    reader = RequestReader()
    reader.feed(HOST + b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nHost: b\r\n\r\n"
                b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    heads = [(e.target, e.headers) for e in _drain(reader) if isinstance(e, RequestHead)]
    assert heads == [("/", [(b"host", b"a"), (b"transfer-encoding", b"chunked")]),
                     ("/next", [(b"host", b"a")])]


def test_trailers_that_never_end_are_refused_at_the_head_limit() -> None:
    reader = RequestReader()
    reader.feed(HOST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: ")
    with pytest.raises(Http1Error) as caught:
        for _ in range(100):  # 6.4 MiB of one trailer line, if nothing stopped it
            reader.feed(b"a" * 65536)
    assert (caught.value.status, caught.value.reason) == (431, "http1.trailers_too_large")


@pytest.mark.parametrize("status_line", [b"HTTP/1.1 099 X", b"HTTP/1.1 000 Zero",
                                         b"HTTP/1.1 200 \x1b[31mOK", b"HTTP/1.1 200 O\x00K"])
def test_a_malformed_status_line_is_refused(status_line: bytes) -> None:
    reader = ResponseReader()
    with pytest.raises(Http1Error):
        reader.feed(status_line + b"\r\nContent-Length: 2\r\n\r\nok")


def test_a_response_begun_after_the_one_owed_shows() -> None:
    reader = ResponseReader()
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    assert not reader.in_message
    reader.feed(b"HTTP/1.1 403 Forbidden\r\nX-Junk: ")
    assert reader.in_message


@pytest.mark.parametrize(("version", "expect", "waits"), [
    (b"1.1", b"100-continue", True),
    (b"1.1", b"100-Continue", True),  # the token is case-insensitive (RFC 9110 10.1.1)
    (b"1.0", b"100-continue", False),  # a 1.0 client gets no 1xx
])
def test_a_client_waits_for_100_continue_only_as_the_rfc_says(version: bytes, expect: bytes,
                                                              waits: bool) -> None:
    reader = RequestReader()
    reader.feed(b"POST / HTTP/" + version + b"\r\nHost: a\r\nExpect: " + expect
                + b"\r\nContent-Length: 3\r\n\r\n")
    [head] = [e for e in _drain(reader) if isinstance(e, RequestHead)]
    assert head.expects_continue is waits


def test_a_header_spelled_with_underscores_is_dropped_with_the_one_it_spells() -> None:
    headers = [(b"host", b"a"), (b"vmesh_client_id", b"spiffe://forged"),
               (b"transfer_encoding", b"chunked"), (b"x_custom", b"1")]
    dropped = frozenset({b"vmesh-client-id", b"transfer-encoding"})
    assert forwardable_headers(headers, dropped) == [(b"host", b"a"), (b"x_custom", b"1")]


def test_a_connection_header_cannot_drop_host() -> None:
    headers = [(b"host", b"a"), (b"connection", b"host, x-secret"), (b"x-secret", b"1")]
    assert forwardable_headers(headers) == [(b"host", b"a")]


def test_an_upgrade_request_is_refused_whole_after_the_requests_before_it() -> None:
    reader = RequestReader()
    with pytest.raises(Http1Error) as caught:
        reader.feed(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n"
                    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: ws\r\n\r\n")
    assert caught.value.reason == "http1.upgrade_not_supported"
    targets = [e.target for e in _drain(reader) if isinstance(e, RequestHead)]
    assert targets == ["/first"]
