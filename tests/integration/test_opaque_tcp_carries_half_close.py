"""Opaque TCP through two proxies keeps half-close: the client's FIN reaches the server,
and the server's reply still flows back after it."""

import socket
import subprocess
from pathlib import Path

from tests.integration.mesh import Mesh
from tests.support import require_tool


def test_client_half_close_reaches_the_server_and_the_reply_still_arrives(tmp_path: Path) -> None:
    socat = require_tool("socat")
    mesh = Mesh(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        echo_port = probe.getsockname()[1]
    # `cat` answers only what it read and exits at end of input: the reply is complete
    # and the server closes only if our FIN crossed both proxies.
    echo = subprocess.Popen(
        [socat, f"TCP-LISTEN:{echo_port},bind=127.0.0.1,reuseaddr,fork", "EXEC:cat"]
    )
    try:
        mesh.start_proxy("echo", echo_port)
        front = mesh.start_proxy(
            "front", 1, extra='[[tcp]]\nservice = "echo"\nlisten = "127.0.0.1:0"'
        )
        payload = b"half-close " * 5000
        with socket.create_connection(("127.0.0.1", front.ports["tcp:echo"]), timeout=10) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        assert received == payload
    finally:
        mesh.stop()
        echo.terminate()
        echo.wait(timeout=10)
