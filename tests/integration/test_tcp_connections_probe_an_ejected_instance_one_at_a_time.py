"""Once an ejected instance's backoff has passed, its circuit breaker lets one opaque TCP
connection through to probe it, as one HTTP request: the connections that open while that
probe is still connecting do not reach the instance as well, they fail at once with
`all_endpoints_ejected` (or fail over). The instance here accepts TCP connections but never
completes a TLS handshake (a hung host), so the probe lasts the connect timeout."""

import socket
import threading
from pathlib import Path

from tests.integration.mesh import Mesh, wait_until
from tests.integration.mesh import upstream_of as upstream
from tests.integration.processes import answered_by

CONNECTIONS = 5


class HungInstance:
    """A port that accepts connections and never answers; it counts those it accepted."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=CONNECTIONS * 2)
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.listener.accept()[0])
            except OSError:  # closed by `close`
                return

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join(10)
        for conn in self.accepted:
            conn.close()


def test_connections_opened_during_a_probe_do_not_reach_the_ejected_instance(
    tmp_path: Path,
) -> None:
    mesh = Mesh(tmp_path)
    policy = mesh.root / "etc/vmesh/policy.d/breaker.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text("kind: ServicePolicy\nservice: echo\ncircuit_breaker: "
                      "{consecutive_failures: 1, backoff: {min: 1s, max: 1s, jitter: 0}}\n")
    hung = HungInstance()
    try:
        mesh.add_instance("echo", hung.port, "echo-hung")
        front = mesh.start_proxy(
            "front", 1, extra='[[tcp]]\nservice = "echo"\nlisten = "127.0.0.1:0"')
        port = front.ports["tcp:echo"]
        assert answered_by(port) == "closed"  # its handshake timed out: ejected
        assert len(hung.accepted) == 1

        def breaker() -> dict:
            return upstream(front, "echo")["instances"][0]["breaker"]

        assert breaker()["state"] == "open"
        wait_until(lambda: breaker()["reopens_in_s"] == 0, what="the end of the backoff")

        clients = [socket.create_connection(("127.0.0.1", port), timeout=10)
                   for _ in range(CONNECTIONS)]
        for client in clients:
            client.sendall(b"ping\n")
        for client in clients:  # each closed without an answer: the probe too, when it fails
            with client:
                assert client.recv(1024) == b""
        assert len(hung.accepted) == 2  # the first connection's, and one probe

        def failed() -> list[str]:
            return sorted(line["reason"] for line in list(front.logs)
                          if line.get("msg") == "opaque TCP connection failed")

        wait_until(lambda: len(failed()) == 1 + CONNECTIONS, what="each failure logged")
        assert failed() == sorted(["upstream.connect_failed"] * 2
                                  + ["all_endpoints_ejected"] * (CONNECTIONS - 1))
    finally:
        mesh.stop()
        hung.close()
