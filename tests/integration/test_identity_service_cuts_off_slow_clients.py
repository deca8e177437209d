"""The identity service reads each request whole within a deadline: a client that trickles
its request a byte at a time, each byte well within the timeout of one read, is cut off at
the deadline instead of holding one of the service's threads for as long as it likes."""

import select
import socket
import ssl
from pathlib import Path

import httpx
import pytest

from tests.integration.identity_service import identity_server

PACE_S = 0.1  # between two bytes of the trickled request
REQUEST = b"POST /v1/join HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}"


def trickle(tls: ssl.SSLSocket, data: bytes) -> tuple[int, bytes]:
    """Send `data` a byte at a time until the service answers or closes the connection: the
    bytes sent, and the first bytes of its answer (b"" when it closed)."""
    tls.setblocking(False)
    for sent in range(len(data) + 1):
        select.select([tls], [], [], PACE_S if sent < len(data) else 10.0)
        try:
            return sent, tls.recv(4096)
        except ssl.SSLWantReadError:  # nothing yet (or only TLS session tickets)
            pass
        if sent < len(data):
            tls.sendall(data[sent:sent + 1])
    raise AssertionError("the service neither answered nor closed the connection")


def test_a_trickled_request_is_cut_off_and_others_are_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "identity"
    with identity_server(directory, request_deadline=1.0) as server:
        port = server.server_address[1]
        trusted = ssl.create_default_context(cafile=str(directory / "bundle.pem"))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                trusted.wrap_socket(raw, server_hostname="127.0.0.1") as slow:
            sent, answer = trickle(slow, REQUEST)  # ~6 s of trickling, six times the deadline

            assert answer == b"", f"read the request whole ({sent} bytes) and answered {answer!r}"
            assert sent < len(REQUEST)
            assert any(getattr(record, "reason", None) == "request.too_slow"
                       for record in caplog.records)
            healthy = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trusted, timeout=10)
            assert healthy.status_code == 200
