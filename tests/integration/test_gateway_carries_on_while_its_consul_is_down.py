"""A mesh gateway whose local Consul agent fails keeps carrying connections to the instances
it last knew, as a proxy does (last known good): it logs the switch, its /ready stays 200 and
says so, `gateway_discovery_stale_services` counts the services concerned; a gateway restarted
during the outage has the saved instances too; once the agent answers again, so does it."""

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_consul import FakeConsul
from tests.integration.mesh import (
    TRUST_DOMAIN,
    Mesh,
    ProxyProcess,
    start_gateway_process,
    wait_until,
)
from tests.support import client_hello, echo_server, exchange


@pytest.fixture
def echo() -> Iterator[int]:
    with echo_server() as port:
        yield port


def carried(gateway: ProxyProcess, service: str) -> bool:
    """Whether the gateway carries a connection for `service` to an instance: the ClientHello
    comes back from the echoing instance."""
    hello = client_hello(f"{service}.dc1.{TRUST_DOMAIN}")
    with socket.create_connection(("127.0.0.1", gateway.ports["port"]), timeout=10) as raw:
        return exchange(raw, hello) == hello


def ready(gateway: ProxyProcess) -> tuple[int, str]:
    with gateway.admin() as admin:
        answer = admin.get("/ready")
    return answer.status_code, answer.json()["reason"]


def test_the_gateway_carries_on_to_the_last_known_instances_while_consul_is_down(
    tmp_path: Path, agent: FakeConsul, echo: int
) -> None:
    site = Mesh(tmp_path / "dc1", discovery=agent.discovery_table())
    (site.root / "etc/vmesh/gateway.toml").write_text(
        'datacenter = "dc1"\nlisten = "127.0.0.1:0"\nwan_address = "127.0.0.1"\ndrain = "1s"\n')
    agent.register({"ID": "echo-1", "Name": "echo", "Address": "127.0.0.1", "Port": echo,
                    "Meta": {"td": TRUST_DOMAIN}})
    gateways = [start_gateway_process(site.env)]
    try:
        gateway = gateways[0]
        assert carried(gateway, "echo")
        assert gateway.metric("gateway_discovery_stale_services") == 0

        agent.stop()
        line = gateway.wait_for_log(lambda line: line.get("event") == "gateway_discovery_stale")
        assert (line["dst_service"], line["instances"]) == ("echo", 1)
        assert carried(gateway, "echo")
        assert gateway.metric("gateway_discovery_stale_services") == 1
        status, reason = ready(gateway)
        assert status == 200 and "discovery does not answer for echo" in reason

        # restarted while the agent is still down: the saved instances carry on
        gateway.stop()
        gateways.append(start_gateway_process(site.env))
        gateway = gateways[-1]
        assert carried(gateway, "echo")
        gateway.wait_for_log(lambda line: line.get("event") == "gateway_discovery_stale")

        agent.start()
        gateway.wait_for_log(lambda line: line.get("event") == "gateway_discovery_fresh",
                             within=20)
        wait_until(lambda: gateway.metric("gateway_discovery_stale_services") == 0,
                   what="no service routed on a stale set any more")
        assert ready(gateway) == (200, "ready")
        assert carried(gateway, "echo")
    finally:
        for gateway in gateways:
            gateway.stop()
