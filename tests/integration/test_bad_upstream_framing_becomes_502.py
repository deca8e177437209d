"""An app answering with framing the proxy cannot pass on faithfully gets the caller a 502."""

import socket
import subprocess
import threading
from pathlib import Path

from tests.integration.mesh import Mesh
from tests.support import require_tool

BAD_RESPONSE = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                b"3\r\nabc\r\n0\r\n\r\n")


def _serve_bad_responses(listener: socket.socket, stop: threading.Event) -> None:
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                data += chunk
            conn.sendall(BAD_RESPONSE)


def test_response_with_gzip_then_chunked_is_not_relayed(tmp_path: Path) -> None:
    curl = require_tool("curl")
    mesh = Mesh(tmp_path)
    stop = threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        server = threading.Thread(target=_serve_bad_responses, args=(listener, stop), daemon=True)
        server.start()
        try:
            mesh.start_proxy("odd", listener.getsockname()[1])
            front = mesh.start_proxy("front", 1)
            result = subprocess.run(
                [curl, "-sS", "-i", "-H", "Host: odd", f"http://{front.outbound}/x"],
                capture_output=True, text=True, timeout=30,
            )
        finally:
            stop.set()
            server.join(5)
            mesh.stop()
    head = result.stdout.partition("\n\n")[0].lower()
    assert head.startswith("http/1.1 502 "), result.stdout
    assert "vmesh-error: upstream.bad_response" in head
    assert "abc" not in result.stdout
