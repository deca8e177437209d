"""Opaque TCP connections of a `[[tcp]]` listener are balanced as Linkerd balances them: each
open tunnel is load on its instance for as long as it is open (`/v1/endpoints` counts it in
`pending`), and its connect and handshake time is the instance's latency. Connections held
open at once spread over the instances, and new ones go to the instance carrying fewer,
instead of all going to the instance discovery listed first."""

import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.mesh import Mesh, ProxyProcess, wait_until
from tests.integration.mesh import upstream_of as upstream
from tests.integration.processes import held_open, start_echo

HELD = 40  # connections held open at once
INSTANCES = {"echo-1", "echo-2"}  # listed in this order by discovery


@dataclass
class Echoes:
    front: ProxyProcess
    listener: int  # the port of front's `[[tcp]]` listener for echo
    held: list[socket.socket]  # connections the test holds open, closed at its end

    def hold(self) -> str:
        """Open a connection through the listener and keep it open: the instance it reached."""
        sock, name = held_open(self.listener)
        self.held.append(sock)
        return name

    def pending(self) -> dict[str, int]:
        """What the front proxy's `/v1/endpoints` says each instance has outstanding."""
        return {i["id"]: i["pending"] for i in upstream(self.front, "echo")["instances"]}


@pytest.fixture
def echoes(tmp_path: Path) -> Iterator[Echoes]:
    """Two instances of echo, each an echo app that says its name behind its own proxy, and a
    front proxy with a `[[tcp]]` listener for echo."""
    mesh = Mesh(tmp_path)
    apps = [start_echo(name) for name in sorted(INSTANCES)]
    held: list[socket.socket] = []
    try:
        for name, app in zip(sorted(INSTANCES), apps, strict=True):
            mesh.start_proxy("echo", app.port, instance_id=name)
        front = mesh.start_proxy(
            "front", 1, extra='[[tcp]]\nservice = "echo"\nlisten = "127.0.0.1:0"')
        yield Echoes(front, front.ports["tcp:echo"], held)
    finally:
        for sock in held:
            sock.close()
        mesh.stop()
        for app in apps:
            app.stop()


def test_connections_held_open_at_once_spread_over_both_instances(echoes: Echoes) -> None:
    reached = Counter(echoes.hold() for _ in range(HELD))
    assert set(reached) == INSTANCES and min(reached.values()) >= HELD / 3, reached
    assert echoes.pending() == dict(reached)  # each open tunnel is outstanding on its instance


def test_new_connections_go_to_the_instance_holding_fewer_tunnels(echoes: Echoes) -> None:
    reached = [echoes.hold() for _ in range(HELD)]
    busy = Counter(reached).most_common(1)[0][0]
    [other] = INSTANCES - {busy}
    for sock, name in zip(list(echoes.held), reached, strict=True):
        if name == other:  # its tunnels end: `busy` alone holds some, at least half of them
            sock.close()
            echoes.held.remove(sock)
    wait_until(lambda: echoes.pending()[other] == 0, what=f"{other}'s tunnels closed")
    assert [echoes.hold() for _ in range(4)] == [other] * 4
