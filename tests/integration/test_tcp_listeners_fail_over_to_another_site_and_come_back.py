"""A [[tcp]] listener's opaque connections follow their service's ServicePolicy `failover` as
HTTP requests do: while dc1 lists no instance of the service, each new connection goes to the
failover destination in east (one decision per connection), under that destination in metrics,
the tap event and the proxy's log line, and back to dc1 as soon as dc1 lists one again; each
change is logged once, not once per connection. While the service's only instance is ejected
by its circuit breaker, connections fail over too, and come back once the probe that the breaker
lets through after its backoff has reached the instance.

Each site has its own fake agent (federated as over the WAN) and VMESH_ROOT; one CA."""

import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fake_consul import FakeConsul
from tests.integration.mesh import TRUST_DOMAIN, Mesh, ProxyProcess, wait_until
from tests.integration.mesh import upstream_of as upstream
from tests.integration.processes import Process, answered_by, start_echo


@dataclass
class Sites:
    home: Mesh  # dc1
    east: Mesh
    apps: list[Process]


@pytest.fixture
def sites(tmp_path: Path, agent: FakeConsul, east: FakeConsul) -> Iterator[Sites]:
    home = Mesh(tmp_path / "dc1", discovery=agent.discovery_table())
    far = Mesh(tmp_path / "east", discovery=east.discovery_table(), ca_dir=home.ca_dir)
    found = Sites(home, far, [])
    yield found
    home.stop()
    far.stop()
    for app in found.apps:
        app.stop()


def changes(front: ProxyProcess, service: str) -> list[tuple[str, str | None]]:
    """The failover changes `front` logged for `service`: (event, to or from)."""
    return [(line["event"], line.get("failover_to", line.get("failover_from")))
            for line in list(front.logs)
            if line.get("event") in ("failover", "failover_ended")
            and line.get("dst_service") == service]


def test_tcp_connections_fail_over_to_east_while_dc1_lists_no_instance_and_come_back(
    agent: FakeConsul, east: FakeConsul, sites: Sites
) -> None:
    name = f"echo{secrets.token_hex(3)}"
    here, there = f"{name}-dc1-app", f"{name}-east-app"
    policy = sites.home.root / "etc/vmesh/policy.d/failover.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(f"kind: ServicePolicy\nservice: {name}\nfailover: [{name}.east]\n")
    sites.apps += [start_echo(here), start_echo(there)]
    local = sites.home.start_proxy(name, sites.apps[0].port, instance_id=f"{name}-dc1")
    sites.east.start_proxy(name, sites.apps[1].port, instance_id=f"{name}-east")
    front = sites.home.start_proxy(
        f"front{secrets.token_hex(3)}", 1,
        extra=f'access_log = true\n[[tcp]]\nservice = "{name}"\nlisten = "127.0.0.1:0"')
    port = front.ports[f"tcp:{name}"]

    wait_until(lambda: answered_by(port) == here, within=15, what="dc1's instance found")
    assert [answered_by(port) for _ in range(3)] == [here] * 3  # dc1 first, east untouched
    assert upstream(front, name)["failover"] is None

    local.proc.send_signal(signal.SIGUSR1)  # leaves discovery (still serving)
    wait_until(lambda: answered_by(port) == there, within=15, what="failover to east")
    assert [answered_by(port) for _ in range(3)] == [there] * 3
    shown = upstream(front, name)["failover"]
    assert shown is not None
    assert (shown["to"], shown["reason"], shown["detail"]) == (
        f"{name}.east", "no_endpoints", f"discovery lists no instance of {name}")
    # counted, tapped and logged under the destination the connections went to
    server_id = f"spiffe://{TRUST_DOMAIN}/svc/{name}"
    wait_until(lambda: front.metric("tcp_close_total", dst_service=f"{name}.east",
                                    server_id=server_id, error="") == 4,
               what="metrics counting the four connections to east under dst_service echo.east")
    tapped = front.wait_for_log(lambda line: line.get("msg") == "request"
                                and line["request"]["dst"]["service"] == f"{name}.east")
    assert tapped["request"]["dst"]["id"] == server_id
    assert tapped["request"]["error"] is None
    relayed = front.wait_for_log(lambda line: line.get("msg") == "opaque TCP connection"
                                 and line.get("dst_service") == f"{name}.east")
    assert relayed["upstream"] == name
    assert changes(front, name) == [("failover", f"{name}.east")]  # once, not per connection

    local.proc.send_signal(signal.SIGTTIN)  # dc1's instance joins again
    wait_until(lambda: answered_by(port) == here, within=15, what="connections back in dc1")
    assert [answered_by(port) for _ in range(3)] == [here] * 3
    assert upstream(front, name)["failover"] is None
    wait_until(lambda: changes(front, name) == [("failover", f"{name}.east"),
                                                ("failover_ended", f"{name}.east")],
               what="the failover and its end, each logged once")


def test_tcp_connections_fail_over_while_the_only_instance_is_ejected_and_return_after_its_probe(
    tmp_path: Path,
) -> None:
    """Static discovery, which keeps listing an instance that stopped answering: the breaker,
    not discovery, takes it out of rotation. The destination is another service of the site."""
    mesh = Mesh(tmp_path)
    policy = mesh.root / "etc/vmesh/policy.d/failover.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text("kind: ServicePolicy\nservice: echo\nfailover: [echo-legacy]\n"
                      "circuit_breaker: {consecutive_failures: 1, "
                      "backoff: {min: 2s, max: 2s, jitter: 0}}\n")
    apps = [start_echo("echo-app"), start_echo("echo-legacy-app")]
    local = None
    try:
        local = mesh.start_proxy("echo", apps[0].port)
        mesh.start_proxy("echo-legacy", apps[1].port)
        front = mesh.start_proxy(
            "front", 1, extra='[[tcp]]\nservice = "echo"\nlisten = "127.0.0.1:0"')
        port = front.ports["tcp:echo"]
        assert answered_by(port) == "echo-app"

        local.proc.send_signal(signal.SIGSTOP)  # accepts no more handshakes, still listed
        assert answered_by(port) == "closed"  # its handshake timed out: ejected at once
        assert [answered_by(port) for _ in range(3)] == ["echo-legacy-app"] * 3
        assert front.wait_for_log(
            lambda line: line.get("msg") == "opaque TCP connection failed"
        )["reason"] == "upstream.connect_failed"
        shown = upstream(front, "echo")["failover"]
        assert shown is not None
        assert (shown["to"], shown["reason"]) == ("echo-legacy", "all_endpoints_ejected")

        local.proc.send_signal(signal.SIGCONT)
        # after the backoff, one connection probes the instance; once it got through, all go
        wait_until(lambda: answered_by(port) == "echo-app", within=15, what="the probe")
        assert [answered_by(port) for _ in range(3)] == ["echo-app"] * 3
        assert upstream(front, "echo")["failover"] is None
        wait_until(lambda: changes(front, "echo") == [("failover", "echo-legacy"),
                                                      ("failover_ended", "echo-legacy")],
                   what="the failover and its end, each logged once")
    finally:
        if local is not None:
            local.proc.send_signal(signal.SIGCONT)
        mesh.stop()
        for app in apps:
            app.stop()
