"""An opaque TCP connection of a `[[tcp]]` listener whose instance cannot be connected to goes
to another instance, as an HTTP request does: nothing of the client's was sent yet. An
instance that refuses the connection, presents another service's identity (discovery lists
the wrong proxy) or does not speak `vmesh-opaque/2` is skipped for another (logged), and
counted by its circuit breaker, as for HTTP: with `consecutive_failures: 1` it is ejected."""

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.mesh import Mesh, ProxyProcess
from tests.integration.mesh import upstream_of as upstream
from tests.integration.processes import answered_by, held_open, start_echo
from tests.support import free_port

BREAKER = ("kind: ServicePolicy\nservice: echo\n"
           "circuit_breaker: {consecutive_failures: 1, backoff: {min: 60s, max: 60s}}\n")

# each lists an instance of echo that cannot take an opaque connection: (its port, reason)
Broken = Callable[[Mesh, ProxyProcess], tuple[int, str]]


def refusing(_mesh: Mesh, _echo: ProxyProcess) -> tuple[int, str]:
    return free_port(), "upstream.connect_failed"


def impostor(mesh: Mesh, _echo: ProxyProcess) -> tuple[int, str]:
    """The inbound port of db's proxy, which presents spiffe://.../svc/db."""
    return mesh.start_proxy("db", 1).ports["inbound"], "upstream.wrong_identity"


def without_opaque(_mesh: Mesh, echo: ProxyProcess) -> tuple[int, str]:
    """echo's proxy's own admin port: echo's identity, ALPN http/1.1 only."""
    return echo.ports["admin"], "upstream.opaque_not_supported"


@pytest.mark.parametrize("broken", [refusing, impostor, without_opaque])
def test_every_connection_reaches_the_live_instance_and_the_broken_one_is_ejected(
    tmp_path: Path, broken: Broken
) -> None:
    mesh = Mesh(tmp_path)
    app = start_echo("echo-app")
    policy = mesh.root / "etc/vmesh/policy.d/breaker.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(BREAKER)
    try:
        echo = mesh.start_proxy("echo", app.port)
        port, reason = broken(mesh, echo)
        mesh.instances.insert(0, {"service": "echo", "id": "echo-broken",
                                  "address": "127.0.0.1", "port": port})
        mesh.write_endpoints()
        front = mesh.start_proxy(
            "front", 1, extra='[[tcp]]\nservice = "echo"\nlisten = "127.0.0.1:0"')
        listener = front.ports["tcp:echo"]

        def skipped() -> list[dict]:
            return [line for line in list(front.logs)
                    if line.get("msg") == "instance refused the connection; trying another"]

        held = []  # open at once: each is load on echo-1, so the balancer soon picks the other
        try:
            for _ in range(50):  # until the balancer has picked the broken one
                sock, name = held_open(listener)
                held.append(sock)
                assert name == "echo-app"
                if skipped():
                    break
        finally:
            for sock in held:
                sock.close()
        [line] = skipped()  # ejected at its first failure, then never picked again
        assert (line["instance"], line["dst_service"]) == ("echo-broken", "echo")
        assert line["detail"].startswith(f"{reason}: ")
        assert [answered_by(listener) for _ in range(5)] == ["echo-app"] * 5
        breakers = {i["id"]: i["breaker"] for i in upstream(front, "echo")["instances"]}
        assert breakers["echo-broken"]["state"] == "open"
        assert breakers["echo-1"]["state"] == "closed"
    finally:
        mesh.stop()
        app.stop()
