"""Hostile or broken HTTP through real proxies, from a peer over mTLS and from a local app, to
a raw app that answers exactly the bytes a test asks for. Whatever one side sends stays in its
own exchange: bytes an app sends past the response it owed never reach the next caller, a
header spelled with underscores cannot pose as the caller's identity, an early answer is
relayed instead of a 502, and a whole request before bad bytes is still served."""

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.raw_mesh import RawMesh, answered_with, raw_mesh


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[RawMesh]:
    with raw_mesh(tmp_path) as mesh:
        yield mesh


def test_bytes_an_app_sends_past_its_response_never_reach_the_next_caller(
    hostile: RawMesh,
) -> None:
    # the app says 5 bytes, then sends the start of a response nobody asked for
    first = hostile.from_peer(answered_with(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
                                            b"helloHTTP/1.1 403 Forbidden\r\nX-Junk: "))
    assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b"hello")
    # another caller, another connection: the proxy must not hand it that app connection
    second = hostile.from_app(b"GET /victim HTTP/1.1\r\nHost: raw\r\nConnection: close\r\n\r\n")
    assert second.startswith(b"HTTP/1.1 200 ") and second.endswith(b"/victim"), second


def test_a_header_spelled_with_underscores_cannot_pose_as_the_callers_identity(
    hostile: RawMesh,
) -> None:
    answer = hostile.from_peer(b"GET /who HTTP/1.1\r\nHost: raw\r\nConnection: close\r\n"
                               b"vmesh_client_id: spiffe://vmesh.local/svc/admin\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    [head] = [h for h in hostile.app.heads if h.startswith(b"GET /who ")]
    lines = head.lower().split(b"\r\n")
    assert b"vmesh-client-id: spiffe://vmesh.local/svc/peer" in lines
    assert not [line for line in lines if line.startswith(b"vmesh_client_id")]


def test_a_malformed_status_line_from_the_app_is_a_502(hostile: RawMesh) -> None:
    answer = hostile.from_peer(answered_with(b"HTTP/1.1 099 X\r\nContent-Length: 2\r\n\r\nok"))
    assert answer.startswith(b"HTTP/1.1 502 ") and b"vmesh-error: upstream.bad_response" in answer


def test_an_answer_the_app_gives_before_the_body_is_all_sent_is_relayed(
    hostile: RawMesh,
) -> None:
    size = 30_000_000  # more than the sockets between the two hold: the app's close cuts it
    with socket.create_connection(("127.0.0.1", hostile.proxy.ports["inbound"]), timeout=30) \
            as raw, hostile.peer.wrap_socket(raw) as tls:
        tls.sendall(b"POST /early HTTP/1.1\r\nHost: raw\r\nContent-Length: %d\r\n\r\n" % size)
        chunk = bytes(65536)
        for _ in range(size // len(chunk)):
            tls.sendall(chunk)
        tls.sendall(bytes(size % len(chunk)))
        answer = tls.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 "), answer


def test_a_whole_request_before_bad_bytes_is_served_first(hostile: RawMesh) -> None:
    answer = hostile.from_app(b"GET /a HTTP/1.1\r\nHost: raw\r\n\r\n\x00garbage\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and b"\r\n\r\n/a" in answer
    assert b"HTTP/1.1 400 " in answer  # then the garbage is refused and the connection ends


def test_a_request_reaches_the_app_with_its_host_or_not_at_all(hostile: RawMesh) -> None:
    no_host = hostile.from_peer(b"GET /nohost HTTP/1.0\r\n\r\n")
    assert no_host.startswith(b"HTTP/1.1 400 ") and b"vmesh-error: http1.missing_host" in no_host
    named = hostile.from_peer(b"GET /named HTTP/1.1\r\nHost: raw\r\nConnection: host, close\r\n"
                              b"\r\n")
    assert named.startswith(b"HTTP/1.1 200 ")
    assert [h for h in hostile.app.heads if h.startswith(b"GET /nohost ")] == []
    [head] = [h for h in hostile.app.heads if h.startswith(b"GET /named ")]
    assert b"\r\nhost: raw" in head.lower()


def test_a_204_leaves_without_a_content_length(hostile: RawMesh) -> None:
    answer = hostile.from_peer(
        answered_with(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"))
    assert answer.startswith(b"HTTP/1.1 204 ") and b"content-length" not in answer.lower()
