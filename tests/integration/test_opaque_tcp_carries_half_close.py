"""Opaque TCP through two proxies over mTLS: bytes both ways, counted in metrics while the
connection is open, half-close kept (the client's FIN reaches the server and the reply still
flows back after it), and a reset kept as a reset, never passed off as a clean end."""

import contextlib
import socket
import struct
import subprocess
import threading
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


def test_an_open_connection_shows_in_metrics_with_its_bytes_so_far(front: ProxyProcess) -> None:
    payload = b"long-lived " * 1000
    labels = {"direction": "outbound", "dst_service": "echo"}
    with socket.create_connection(("127.0.0.1", front.ports["tcp:echo"]), timeout=10) as sock:
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            received += sock.recv(65536)
        wait_until(
            lambda: (front.metric("tcp_open_total", **labels),
                     front.metric("tcp_close_total", **labels),
                     front.metric("tcp_read_bytes_total", **labels),
                     front.metric("tcp_write_bytes_total", **labels))
            == (1, 0, len(payload), len(payload)),
            what="the open connection and its bytes in metrics",
        )
    wait_until(lambda: front.metric("tcp_close_total", **labels, error="") == 1,
               what="the clean close in metrics")


@pytest.fixture
def resetting(tmp_path: Path) -> Iterator[ProxyProcess]:
    """A `front` proxy with a TCP listener for `resetter`, an app that answers its first
    bytes with an RST (SO_LINGER 0)."""
    server = socket.create_server(("127.0.0.1", 0))

    def reset_each() -> None:
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                conn, _ = server.accept()
                conn.recv(1)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()

    threading.Thread(target=reset_each, daemon=True).start()
    mesh = Mesh(tmp_path)
    try:
        mesh.start_proxy("resetter", server.getsockname()[1])
        yield mesh.start_proxy(
            "front", 1, extra='[[tcp]]\nservice = "resetter"\nlisten = "127.0.0.1:0"'
        )
    finally:
        mesh.stop()
        server.close()


def test_a_reset_by_the_server_reaches_the_client_as_a_reset(resetting: ProxyProcess) -> None:
    port = resetting.ports["tcp:resetter"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"x")
        with pytest.raises(ConnectionResetError):
            while sock.recv(65536):  # a FIN would end this loop: a cut passed off as an end
                pass
    wait_until(lambda: resetting.metric("tcp_close_total", dst_service="resetter",
                                        error="tcp.reset") == 1,
               what="the reset in metrics")
