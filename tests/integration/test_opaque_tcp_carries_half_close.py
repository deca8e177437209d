"""Opaque TCP through two proxies over mTLS: bytes both ways, counted in metrics, and
half-close kept: the client's FIN reaches the server and the reply still flows back after it."""

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.mesh import Mesh, ProxyProcess, wait_until
from tests.support import free_port, require_tool


@pytest.fixture
def front(tmp_path: Path) -> Iterator[ProxyProcess]:
    """A `front` proxy with a TCP listener for `echo`, whose app is socat running `cat`."""
    socat = require_tool("socat")
    mesh = Mesh(tmp_path)
    echo_port = free_port()
    # `cat` answers only what it read and exits at end of input: the reply is complete
    # and the server closes only if our FIN crossed both proxies.
    echo = subprocess.Popen(
        [socat, f"TCP-LISTEN:{echo_port},bind=127.0.0.1,reuseaddr,fork", "EXEC:cat"]
    )
    try:
        mesh.start_proxy("echo", echo_port)
        yield mesh.start_proxy(
            "front", 1, extra='[[tcp]]\nservice = "echo"\nlisten = "127.0.0.1:0"'
        )
    finally:
        mesh.stop()
        echo.terminate()
        echo.wait(timeout=10)


def test_bytes_are_relayed_both_ways_and_counted(front: ProxyProcess) -> None:
    payload = bytes(range(256)) * 400
    with socket.create_connection(("127.0.0.1", front.ports["tcp:echo"]), timeout=10) as sock:
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            assert chunk, "connection closed early"
            received += chunk
    assert received == payload
    wait_until(
        lambda: front.metric("tcp_read_bytes_total", dst_service="echo") == len(payload),
        what="the TCP connection in metrics",
    )


def test_client_half_close_reaches_the_server_and_the_reply_still_arrives(
    front: ProxyProcess,
) -> None:
    payload = b"half-close " * 5000
    with socket.create_connection(("127.0.0.1", front.ports["tcp:echo"]), timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received == payload
