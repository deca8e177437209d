"""A [[tcp]] listener for another site's service (`echo.east`, east in dc1's `gateways`) carries
its opaque connections through east's mesh gateway, as the outbound proxy carries HTTP requests:
the TLS handshake asks the gateway for `<service>.east.<trust domain>`, the gateway splices the
bytes to east's instance, and dc1's proxy checks that instance's own identity. The connection
is counted and logged under `echo.east`.

Each site has its own fake agent (federated as over the WAN) and VMESH_ROOT; one CA."""

import secrets
import socket
from pathlib import Path

from tests.fake_consul import FakeConsul
from tests.integration.mesh import TRUST_DOMAIN, Mesh, start_gateway_process, wait_until
from tests.integration.mesh import upstream_of as upstream
from tests.integration.processes import start_echo

GATEWAY_TOML = ('datacenter = "east"\nlisten = "127.0.0.1:0"\nwan_address = "127.0.0.1"\n'
                'instance_id = "east-gw-1"\ndrain = "1s"\n')


def echoed(port: int, payload: bytes) -> bytes:
    """Send `payload` through the listener at `port`, end the input: all that came back."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_a_tcp_connection_to_east_crosses_its_gateway_and_checks_easts_identity(
    tmp_path: Path, agent: FakeConsul, east: FakeConsul
) -> None:
    home = Mesh(tmp_path / "dc1", discovery=agent.discovery_table() + 'gateways = ["east"]\n')
    far = Mesh(tmp_path / "east", discovery=east.discovery_table(), ca_dir=home.ca_dir)
    name = f"echo{secrets.token_hex(3)}"
    app = start_echo(f"{name}-east-app")
    gateway = None
    try:
        far.start_proxy(name, app.port, instance_id=f"{name}-east")
        (far.root / "etc/vmesh/gateway.toml").write_text(GATEWAY_TOML)
        gateway = start_gateway_process(far.env)
        front = home.start_proxy(
            f"front{secrets.token_hex(3)}", 1,
            extra=f'[[tcp]]\nservice = "{name}.east"\nlisten = "127.0.0.1:0"')
        port = front.ports[f"tcp:{name}.east"]
        payload = b"through the gateway\n" * 1000

        expected = f"{name}-east-app\n".encode() + payload
        wait_until(lambda: echoed(port, payload) == expected, within=15,
                   what="east's gateway and instance passing their checks and found from dc1")

        # dc1 sees the gateway as the instance of echo.east, asked for east's echo by name
        assert [(i["addr"], i["gateway"]) for i in upstream(front, f"{name}.east")["instances"]] \
            == [(f"127.0.0.1:{gateway.ports['port']}",
                 {"server_name": f"{name}.east.{TRUST_DOMAIN}"})]
        assert gateway.metric("gateway_connection_total", dst_service=name) >= 1
        assert gateway.metric("gateway_bytes_total", dst_service=name,
                              direction="from_service") >= len(expected)
        # east's instance proved its own identity through the gateway
        wait_until(lambda: front.metric("tcp_close_total", dst_service=f"{name}.east",
                                        server_id=f"spiffe://{TRUST_DOMAIN}/svc/{name}",
                                        error="") >= 1,
                   what="the connection counted under dst_service echo.east")
        line = front.wait_for_log(lambda line: line.get("msg") == "opaque TCP connection")
        assert (line["dst_service"], line["instance"]) == (f"{name}.east", "east-gw-1")
    finally:
        home.stop()
        far.stop()
        if gateway is not None:
            gateway.stop()
        app.stop()
