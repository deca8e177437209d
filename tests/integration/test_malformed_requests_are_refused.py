"""Bad HTTP gets the right status, the connection is closed, and the app never sees it."""

import json
import socket
import time

import httpx
import pytest

from tests.integration.mesh import Mesh
from tests.integration.processes import start_backend

GOOD = b"GET /ok HTTP/1.1\r\nHost: web\r\n\r\n"

CASES = {
    "content-length and chunked": (
        b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web\r\n\r\n",
        400, "http1.content_length_and_chunked_not_allowed"),
    "duplicate differing content-length": (
        b"POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400, "http1.duplicate_content_length"),
    "space in header name": (
        b"GET / HTTP/1.1\r\nHost: web\r\nBad Name: x\r\n\r\n", 400, "http1.invalid_characters"),
    "control character in header value": (
        b"GET / HTTP/1.1\r\nHost: web\r\nX: a\x01b\r\n\r\n", 400, "http1.invalid_characters"),
    "obs-fold": (
        b"GET / HTTP/1.1\r\nHost: web\r\nX: a\r\n folded\r\n\r\n", 400,
        "http1.obs_fold_not_allowed"),
    "bare CR": (b"GET / HTTP/1.1\r\nHost: web\rX: y\r\n\r\n", 400, "http1.bare_cr_or_lf"),
    "request line too long": (
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: web\r\n\r\n", 414,
        "http1.request_line_too_long"),
    "header section too large": (
        b"GET / HTTP/1.1\r\nHost: web\r\n" + b"X-Big: " + b"b" * 40000 + b"\r\n\r\n", 431,
        "http1.headers_too_large"),
    "too many headers": (
        b"GET / HTTP/1.1\r\nHost: web\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150))
        + b"\r\n", 431, "http1.too_many_headers"),
    "transfer-encoding gzip": (
        b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
        "http1.invalid_transfer_encoding"),
    "transfer-encoding gzip, chunked": (
        b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n", 501, "http1.invalid_transfer_encoding"),
    "chunk size overflow": (
        b"POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"FFFFFFFFFFFFFFFFFFFF\r\n", 400, "http1.chunk_size_overflow"),
    "missing host": (b"GET / HTTP/1.1\r\n\r\n", 400, "http1.missing_host"),
    "two hosts": (b"GET / HTTP/1.1\r\nHost: web\r\nHost: evil\r\n\r\n", 400,
                  "http1.multiple_host"),
    "host port that is no number": (b"GET / HTTP/1.1\r\nHost: web:notaport\r\n\r\n", 400,
                                    "http1.invalid_host"),
    "host port out of range": (b"GET / HTTP/1.1\r\nHost: web:65536\r\n\r\n", 400,
                               "http1.invalid_host"),
    "host with a character no name has": (b"GET / HTTP/1.1\r\nHost: web/evil\r\n\r\n", 400,
                                          "http1.invalid_host"),
    "absolute-form port that is no number": (
        b"GET http://web:notaport/ HTTP/1.1\r\nHost: web\r\n\r\n", 400, "http1.invalid_host"),
    "absolute-form IP literal not closed": (
        b"GET http://[::1/ HTTP/1.1\r\nHost: web\r\n\r\n", 400, "http1.invalid_host"),
    "absolute-form with userinfo": (
        b"GET http://user:s3cret@web/ HTTP/1.1\r\nHost: web\r\n\r\n", 400,
        "http1.userinfo_in_target"),
    "absolute-form whose userinfo looks like the host": (
        b"GET http://web.mesh@evil/ HTTP/1.1\r\nHost: web\r\n\r\n", 400,
        "http1.userinfo_in_target"),
    "nul in path": (b"GET /a%00b HTTP/1.1\r\nHost: web\r\n\r\n", 400, None),
    "dot segment with a parameter": (b"GET /public/..;/admin HTTP/1.1\r\nHost: web\r\n\r\n",
                                     400, "http1.path.dot_segment_parameter"),
    "CONNECT": (b"CONNECT web:443 HTTP/1.1\r\nHost: web:443\r\n\r\n", 405,
                "http1.connect_not_allowed"),
    "protocol upgrade": (b"GET /ws HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\n"
                         b"Upgrade: websocket\r\n\r\n", 501, "http1.upgrade_not_supported"),
    "HTTP/2.0 request line": (b"GET / HTTP/2.0\r\nHost: web\r\n\r\n", 505,
                              "http1.invalid_version"),
}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory):
    mesh = Mesh(tmp_path_factory.mktemp("mesh"))
    backend = start_backend("web")
    mesh.start_proxy("web", backend.port)
    front = mesh.start_proxy("front", 1)
    yield front, backend
    mesh.stop()
    backend.stop()


def _exchange(address: str, payload: bytes, timeout: float = 10) -> tuple[bytes, bool]:
    """Send raw bytes; return everything received and whether the proxy closed the socket."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(payload)
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received, False
            if not chunk:
                return received, True
            received += chunk
    return received, False


def _backend_requests(backend) -> int:
    return json.loads(httpx.get(f"http://127.0.0.1:{backend.port}/_stats").text)["requests"]


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_request_is_refused_and_connection_closed(mesh, case: str) -> None:
    front, backend = mesh
    payload, status, reason = CASES[case]
    before = _backend_requests(backend)
    received, closed = _exchange(front.outbound, payload)
    assert received.startswith(b"HTTP/1.1 %d " % status), received[:200]
    if reason:
        assert b"vmesh-error: " + reason.encode() in received
    assert b"front-" in received  # the body names the proxy that refused
    assert closed
    assert _backend_requests(backend) == before


def test_credentials_in_a_refused_target_are_neither_answered_nor_logged(mesh) -> None:
    front, _backend = mesh
    received, _ = _exchange(front.outbound, CASES["absolute-form with userinfo"][0])
    assert b"vmesh-error: http1.userinfo_in_target" in received
    refused = front.wait_for_log(lambda line: line.get("reason") == "http1.userinfo_in_target")
    assert "s3cret" not in json.dumps(refused)
    assert b"s3cret" not in received


def test_headers_that_never_finish_get_408(mesh) -> None:
    front, _backend = mesh
    host, port = front.outbound.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: web\r\nX-Slow: ")
        received = sock.recv(65536)
        assert received.startswith(b"HTTP/1.1 408 "), received
        assert b"vmesh-error: http1.header_timeout" in received
        assert sock.recv(65536) == b""


def test_hosts_the_rfcs_allow_are_served(mesh) -> None:
    front, _backend = mesh
    empty_port, _ = _exchange(front.outbound, b"GET /ok HTTP/1.1\r\nHost: web:\r\n"
                              b"Connection: close\r\n\r\n")
    assert empty_port.startswith(b"HTTP/1.1 200 "), empty_port[:200]
    # absolute form: the target's authority is the Host, whatever the header said (RFC 9112
    # 3.2.2), as long as the header is a valid one
    absolute, _ = _exchange(front.outbound, b"GET http://web:80/ok HTTP/1.1\r\nHost: other\r\n"
                            b"Connection: close\r\n\r\n")
    assert absolute.startswith(b"HTTP/1.1 200 "), absolute[:200]
    assert json.loads(absolute.partition(b"\r\n\r\n")[2])["host"] == "web:80"


def test_a_good_request_after_all_that_still_works(mesh) -> None:
    front, _backend = mesh
    received, _ = _exchange(front.outbound, GOOD, timeout=3)
    assert received.startswith(b"HTTP/1.1 200 "), received[:200]
