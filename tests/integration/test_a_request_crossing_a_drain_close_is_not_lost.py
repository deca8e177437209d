"""A draining proxy closes the idle keep-alive connections its callers' proxies hold. A request
that a caller's proxy sends on one just as it closes (the two cross on the wire) never reaches
the draining proxy's app; it used to end in a 502 when it was not safe to repeat (a POST). The
draining proxy now says so as it closes (408 `proxy.idle_closed`, RFC 9110 15.5.9), and the
caller's proxy sends the request again on a new connection, whatever its method: during an
upgrade no request is lost, and none is executed twice.

The crossing is made certain, not left to chance: the instance's address is a TCP relay that
holds back what the old proxy sends (its close included) until the caller's next request has
gone past it to the old proxy; the connections made after that reach the successor, as they
do on the listening socket a handover shares."""

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.mesh import Mesh, ProxyProcess
from tests.integration.processes import Process, start_backend

WITHIN_S = 20  # bound on every wait of the relay's threads


class HandoverAddress:
    """An instance's address during a handover: the first connection goes to the old proxy,
    later ones to its successor. Once `hold()` is called, what the old proxy sends on the first
    connection (its close too) is held until the caller has sent more: the caller's request
    crosses the close."""

    def __init__(self, old_port: int, successor_port: int) -> None:
        self._targets = [old_port, successor_port]
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self._holding = threading.Event()
        # the old proxy sent something on the first connection since `hold()`: it closes it
        self.old_closing = threading.Event()
        self._caller_sent = threading.Event()  # the caller sent on it since `hold()`
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self._holding.set()

    def close(self) -> None:
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                caller, _ = self._listener.accept()
            except OSError:
                return
            first = self.connections == 0
            self.connections += 1
            port = self._targets[0 if first else 1]
            try:
                instance = socket.create_connection(("127.0.0.1", port), timeout=WITHIN_S)
            except OSError:
                caller.close()
                continue
            self._sockets += [caller, instance]
            threading.Thread(target=self._up, args=(caller, instance, first), daemon=True).start()
            threading.Thread(target=self._down, args=(instance, caller, first),
                             daemon=True).start()

    def _up(self, caller: socket.socket, instance: socket.socket, first: bool) -> None:
        with contextlib.suppress(OSError):
            while data := caller.recv(65536):
                with contextlib.suppress(OSError):  # the old proxy may have closed
                    instance.sendall(data)
                if first and self._holding.is_set():
                    self._caller_sent.set()
            instance.shutdown(socket.SHUT_WR)

    def _down(self, instance: socket.socket, caller: socket.socket, first: bool) -> None:
        with contextlib.suppress(OSError):
            while data := instance.recv(65536):
                if first and self._holding.is_set() and not self._caller_sent.is_set():
                    self.old_closing.set()
                    self._caller_sent.wait(WITHIN_S)
                caller.sendall(data)
            caller.shutdown(socket.SHUT_WR)


class Handover:
    """`web`'s app behind an old proxy and its successor, reached at one `address` by
    `front`'s proxy."""

    def __init__(self, mesh: Mesh, app: Process, cleanup: contextlib.ExitStack) -> None:
        self.mesh, self.app = mesh, app
        self.old: ProxyProcess = self.mesh.start_proxy("web", self.app.port, instance_id="web-1")
        # the new version's proxy, in front of the same app
        successor = self.mesh.start_proxy("web", self.app.port, instance_id="web-1")
        self.address = HandoverAddress(self.old.ports["inbound"], successor.ports["inbound"])
        cleanup.callback(self.address.close)
        self.mesh.instances = [{"service": "web", "id": "web-1", "address": "127.0.0.1",
                                "port": self.address.port}]
        self.mesh.write_endpoints()
        self.front = self.mesh.start_proxy("front", 1)

    def post(self, client: httpx.Client, path: str) -> httpx.Response:
        return client.post(f"http://{self.front.outbound}{path}", headers={"host": "web"},
                           content=b'{"item": 1}')

    def executed(self, path: str) -> int:
        stats = httpx.get(f"http://127.0.0.1:{self.app.port}/_stats", timeout=10).json()
        return int(stats["by_path"].get(path, 0))


@pytest.fixture
def handover(tmp_path: Path) -> Iterator[Handover]:
    """What it started is stopped (the proxies first) even when a later part fails to start."""
    with contextlib.ExitStack() as cleanup:
        app = start_backend("web")
        cleanup.callback(app.stop)
        mesh = Mesh(tmp_path)
        cleanup.callback(mesh.stop)
        yield Handover(mesh, app, cleanup)


def test_a_post_sent_as_the_draining_proxy_closes_its_connection_is_answered_once(
    handover: Handover,
) -> None:
    with httpx.Client(timeout=WITHIN_S) as client:
        assert handover.post(client, "/orders/warm").status_code == 200  # pools a connection
        handover.address.hold()
        handover.old.proc.send_signal(signal.SIGTERM)
        # the old proxy closes the idle connection after its drain grace; front does not
        # know yet when its next request goes out on it
        assert handover.address.old_closing.wait(WITHIN_S), "the old proxy kept the connection"

        answer = handover.post(client, "/orders/new")

    assert answer.status_code == 200, answer.text
    assert answer.json()["path"] == "/orders/new"
    assert handover.executed("/orders/new") == 1
    assert handover.address.connections == 2  # the request went again, to the successor
    assert handover.front.metric("request_resend_total", direction="outbound",
                                 reason="proxy.idle_closed") == 1
    assert handover.old.proc.wait(WITHIN_S) == 0
