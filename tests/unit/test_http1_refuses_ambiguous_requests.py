"""The HTTP/1.1 reader refuses every ambiguous or oversized request with a stable reason."""

import pytest

from proxy.http1 import Body, End, Head, MessageReader, ProtocolError, strip_hop_by_hop

BAD = {
    "cl_and_te": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n", 400,
                  "http1.content_length_and_chunked_not_allowed"),
    "differing_cl": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                     b"Content-Length: 4\r\n\r\n",
                     400, "http1.content_length_mismatch"),
    "control_char": (b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n", 400, "http1.invalid_characters"),
    "space_in_name": (b"GET / HTTP/1.1\r\nHo st: ab\r\n\r\n", 400, "http1.invalid_characters"),
    "obs_fold": (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  c\r\n\r\n", 400,
                 "http1.invalid_characters"),
    "bare_cr": (b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400, "http1.invalid_characters"),
    "long_line": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414,
                  "http1.request_line_too_long"),
    "big_headers": (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 400)
                                                      for i in range(90)) + b"\r\n",
                    431, "http1.headers_too_large"),
    "many_headers": (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(150))
                     + b"\r\n", 431, "http1.too_many_headers"),
    "te_gzip": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
                "http1.invalid_transfer_encoding"),
    "te_gzip_chunked": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                        501, "http1.invalid_transfer_encoding"),
    "chunk_overflow": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"FFFFFFFFFFFFFFFFFFFFF\r\n", 400, "http1.invalid_chunk_size"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_request_is_refused_with_reason(case: str) -> None:
    data, status, reason = BAD[case]
    with pytest.raises(ProtocolError) as caught:
        MessageReader().feed(data)
    assert (caught.value.status, caught.value.reason) == (status, reason)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_request_is_refused_when_fed_byte_by_byte(case: str) -> None:
    data, _, reason = BAD[case]
    reader = MessageReader()
    with pytest.raises(ProtocolError) as caught:
        for i in range(len(data)):
            reader.feed(data[i:i + 1])
    assert caught.value.reason == reason


def test_pipelined_requests_come_out_in_order() -> None:
    events = MessageReader().feed(
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    heads = [e.target for e in events if isinstance(e, Head)]
    assert heads == ["/a", "/b"]
    assert [e.data for e in events if isinstance(e, Body)] == [b"abc"]
    assert [e.keep_alive for e in events if isinstance(e, End)] == [True, True]


def test_http10_without_keep_alive_ends_the_connection() -> None:
    events = MessageReader().feed(b"GET / HTTP/1.0\r\n\r\n")
    assert events[-1] == End(keep_alive=False)


def test_response_without_length_is_read_until_close() -> None:
    reader = MessageReader(response=True)
    events = reader.feed(b"HTTP/1.1 200 OK\r\n\r\nhello")
    assert [type(e) for e in events] == [Head, Body]
    assert reader.feed_eof() == [End(keep_alive=False)]


def test_hop_by_hop_headers_and_those_named_in_connection_are_stripped() -> None:
    headers = [("connection", "keep-alive, x-secret"), ("x-secret", "1"), ("keep-alive", "5"),
               ("te", "trailers"), ("x-kept", "1")]
    assert strip_hop_by_hop(headers) == [("x-kept", "1")]
