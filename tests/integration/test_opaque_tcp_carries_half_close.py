"""Opaque TCP through two proxies over mTLS: bytes both ways, counted in metrics while the
connection is open, half-close kept (the client's FIN reaches the server and the reply still
flows back after it), and a cut kept as a cut (a reset by either end, a proxy that stops at
its drain deadline), never passed off as a clean end."""

import contextlib
import queue
import signal
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.mesh import Mesh, ProxyProcess, wait_until
from tests.support import exchange, free_port, require_tool


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
        assert exchange(sock, payload) == payload


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
    bytes with part of a reply, then an RST (SO_LINGER 0)."""
    server = socket.create_server(("127.0.0.1", 0))

    def reset_each() -> None:
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                conn, _ = server.accept()
                conn.recv(1)
                conn.sendall(b"the first part")
                _reset(conn)

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


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _end(sock: socket.socket) -> str:
    """Read `sock` to its end: "eof" (a FIN), or the name of the exception that ended it."""
    try:
        while sock.recv(65536):
            pass
    except OSError as exc:
        return type(exc).__name__
    return "eof"


def test_a_reset_by_the_server_reaches_the_client_as_a_reset(resetting: ProxyProcess) -> None:
    port = resetting.ports["tcp:resetter"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"x")
        assert _end(sock) == "ConnectionResetError"  # "eof": a cut passed off as an end
    wait_until(lambda: resetting.metric("tcp_close_total", dst_service="resetter",
                                        error="tcp.reset") == 1,
               what="the reset in metrics")


@pytest.fixture
def echoing(tmp_path: Path) -> Iterator[tuple[ProxyProcess, "queue.Queue[str]"]]:
    """A `front` proxy (drain timeout 1 s, access log on) with a TCP listener for `echo`, an
    app that sends back what it reads and tells how each of its streams ended (see `_end`)."""
    server = socket.create_server(("127.0.0.1", 0))
    ends: queue.Queue[str] = queue.Queue()

    def echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError as exc:
                ends.put(type(exc).__name__)
            else:
                ends.put("eof")

    def accept_each() -> None:
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                threading.Thread(target=echo, args=(server.accept()[0],), daemon=True).start()

    threading.Thread(target=accept_each, daemon=True).start()
    mesh = Mesh(tmp_path)
    try:
        mesh.start_proxy("echo", server.getsockname()[1])
        front = mesh.start_proxy(
            "front", 1, drain="1s",
            extra='access_log = true\n[[tcp]]\nservice = "echo"\nlisten = "127.0.0.1:0"',
        )
        yield front, ends
    finally:
        mesh.stop()
        server.close()


def _echoed(front: ProxyProcess) -> socket.socket:
    """A connection through `front` to the echo app, in the middle of its stream."""
    sock = socket.create_connection(("127.0.0.1", front.ports["tcp:echo"]), timeout=10)
    sock.sendall(b"mid-stream")
    assert sock.recv(65536) == b"mid-stream"
    return sock


def test_a_reset_by_the_client_reaches_the_server_as_a_reset(echoing) -> None:
    front, ends = echoing
    _reset(_echoed(front))
    assert ends.get(timeout=10) == "ConnectionResetError"


def test_a_tunnel_cut_at_the_drain_deadline_is_a_reset_at_both_ends_and_logged_as_cut(
        echoing) -> None:
    front, ends = echoing
    with _echoed(front) as sock:
        front.proc.send_signal(signal.SIGTERM)  # the tunnel outlives the 1 s drain
        assert _end(sock) == "ConnectionResetError"
    assert ends.get(timeout=10) == "ConnectionResetError"
    assert front.proc.wait(timeout=10) == 0
    # what the stopping proxy printed: its access log line of the tunnel says it was cut
    # (as its tcp_close_total counts it), and the drain's warning counts it
    tunnel = front.wait_for_log(lambda line: line.get("logger") == "vmesh.access")["request"]
    assert (tunnel["dst"]["service"], tunnel["bytes_in"], tunnel["bytes_out"]) == ("echo", 10, 10)
    assert (tunnel["error"] or "").startswith("tcp.drain_timeout: ")  # no clean close (null)
    drain = front.wait_for_log(lambda line: line["msg"].startswith("drain timeout"))
    assert (drain["in_flight"], drain["tunnels_cut"]) == (1, 1)
