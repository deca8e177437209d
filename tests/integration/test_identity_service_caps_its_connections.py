"""The identity service holds at most `--max-connections` connections open: a flood of
connections beyond it waits in the listen queue (no descriptor, no thread spent on it), and
is served as soon as one of those open closes. Reaching the cap is logged once per episode,
its end once, and counted in `/metrics`."""

import re
import socket
import ssl
from pathlib import Path

import httpx
import psutil

from tests.integration.identity_service import running_identity_service, vmesh

CAP = 3
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def established(pid: int, port: int) -> int:
    """The connections to `port` that the process `pid` has accepted."""
    return sum(1 for c in psutil.Process(pid).net_connections(kind="tcp")
               if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port)


def test_connections_beyond_the_cap_wait_and_are_served_below_it(tmp_path: Path) -> None:
    vmesh(tmp_path, "identity", "init")
    trusted = ssl.create_default_context(cafile=str(tmp_path / "var/lib/vmesh/identity/bundle.pem"))
    with running_identity_service(tmp_path, "--max-connections", str(CAP)) as service:
        port = int(service.url.rsplit(":", 1)[1])
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(CAP)]
        beyond = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        try:
            service.wait_for_log(lambda r: r.get("reason") == "connections.at_cap")
            assert established(service.proc.pid, port) == CAP

            held.pop().close()  # one place frees: the first waiting connection takes it
            with trusted.wrap_socket(beyond[0], server_hostname="127.0.0.1") as tls:
                tls.sendall(HEALTHZ)
                assert tls.recv(4096).startswith(b"HTTP/1.1 200 ")
        finally:
            for sock in held + beyond:
                sock.close()
        service.wait_for_log(lambda r: r.get("msg") == "accepting connections again")
        metrics = httpx.get(f"{service.url}/metrics", verify=trusted, timeout=10).text

    at_cap = [r for r in service.logs if r.get("reason") == "connections.at_cap"]
    assert len(at_cap) == 1 and at_cap[0]["max_connections"] == CAP
    assert re.search(r"^identity_connection_cap_reached_total 1\.0$", metrics, re.M), metrics
    assert re.search(rf"^identity_connections_max {CAP}\.0$", metrics, re.M), metrics
