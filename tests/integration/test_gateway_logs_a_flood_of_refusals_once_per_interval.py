"""A scanner (or a misconfigured site) that sends the gateway connections it cannot carry
does not flood the journal: the gateway logs the first refusal of each reason, counts every
one in `gateway_refused_total{reason}`, and says in one line at the end of its
`refusal_log_interval` how many more of that reason it refused without a line each."""

import socket
from pathlib import Path

from tests.fake_consul import FakeConsul
from tests.integration.mesh import TRUST_DOMAIN, Mesh, start_gateway_process, wait_until
from tests.support import client_hello

FLOOD = 60


def knock(port: int, data: bytes) -> None:
    """Connect, send `data`, and wait until the gateway closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(data)
        while raw.recv(100):
            pass


def test_a_flood_of_refusals_is_counted_exactly_and_logged_once_per_interval(
    tmp_path: Path, agent: FakeConsul
) -> None:
    site = Mesh(tmp_path / "dc1", discovery=agent.discovery_table())
    (site.root / "etc/vmesh/gateway.toml").write_text(
        'datacenter = "dc1"\nlisten = "127.0.0.1:0"\nwan_address = "127.0.0.1"\n'
        'refusal_log_interval = "2s"\n')
    gateway = start_gateway_process(site.env)
    try:
        port = gateway.ports["port"]
        for _ in range(FLOOD):
            knock(port, b"GET / HTTP/1.1\r\nHost: api\r\n\r\n")
        knock(port, client_hello(f"api.west.{TRUST_DOMAIN}"))  # another reason: its own line

        assert gateway.metric("gateway_refused_total", reason="gateway.not_tls") == FLOOD

        def lines(event: str, reason: str) -> list[dict]:
            return [line for line in gateway.logs
                    if line.get("event") == event and line.get("reason") == reason]

        def told() -> int:
            return (len(lines("gateway_refused", "gateway.not_tls"))
                    + sum(line["suppressed"]
                          for line in lines("gateway_refused_unlogged", "gateway.not_tls")))

        wait_until(lambda: told() == FLOOD, within=15,
                   what="the refusals logged and those told as unlogged adding up to the flood")
        logged = lines("gateway_refused", "gateway.not_tls")
        assert 1 <= len(logged) < FLOOD // 4
        [unlogged, *_] = lines("gateway_refused_unlogged", "gateway.not_tls")
        assert unlogged["msg"] == "gateway refused more connections than it logged"
        assert unlogged["within_s"] == 2.0
        other = [line for line in gateway.logs if line.get("event") == "gateway_refused"
                 and line.get("reason") not in (None, "gateway.not_tls")]
        assert len(other) == 1
    finally:
        gateway.stop()
