"""Who may call what on the admin port, over the TLS context the proxy really uses (a client
certificate asked for, not required): every path and method, and the spellings a client
might try to slip past the check (a trailing slash, other case, `.` and `..` segments,
percent-encoding, a query, absolute form), answered 200 only where DESIGN's table allows it:
`/ready` and `/live` to anyone, metrics, stats, endpoints and certs to a mesh identity,
tap, logs and config to an operator alone."""

import asyncio
import ssl
from pathlib import Path

import pytest

from identity import pki
from proxy.admin import AdminServer
from proxy.events import EventBus
from proxy.observability import Observability
from proxy.tls import TlsMaterial
from tests.integration.admin_support import FixedProxyFacts, client_context, write_identity

TD = "vmesh.local"
ANYONE = ("/ready", "/live")
MESH = ("/metrics", "/v1/stats", "/v1/endpoints", "/v1/certs")
OPERATOR = ("/v1/tap", "/v1/logs", "/v1/config")
# spellings of an operator path that must never reach its handler
VARIANTS = ("/v1/tap/", "/V1/TAP", "/v1/./tap", "/v1/x/../tap", "/v1/%74ap", "//v1/tap",
            "/v1/tap;x", "http://admin/v1/tap", "/v1/config/", "/v1/logs/.", "/V1/logs",
            "/v1%2Ftap", "/v1/tap%00", "*")


async def _status(port: int, context: ssl.SSLContext, method: str, target: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(f"{method} {target} HTTP/1.1\r\nHost: admin\r\n"
                     "content-length: 0\r\n\r\n".encode())
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return int(status_line.split()[1])


@pytest.fixture
async def admin_port(tmp_path: Path):
    anchor = pki.create_anchor(TD)
    issuer = pki.create_issuer(anchor, TD)
    server_dir = write_identity(tmp_path / "api", issuer, anchor, f"spiffe://{TD}/svc/api")
    callers: dict[str, ssl.SSLContext] = {}
    for who, spiffe_id in (("service", "svc/web"), ("host", "host/web-1"),
                           ("operator", "operator/ann")):
        directory = write_identity(tmp_path / who, issuer, anchor, f"spiffe://{TD}/{spiffe_id}")
        callers[who] = client_context(directory, directory / "bundle.pem")
    anonymous = ssl.create_default_context(cafile=str(server_dir / "bundle.pem"))
    anonymous.check_hostname = False
    callers["nobody"] = anonymous
    server = AdminServer(FixedProxyFacts(), Observability.attach(EventBus()), trust_domain=TD)
    context = TlsMaterial(server_dir).admin_front
    assert context is not None
    port = (await server.serve_tcp("127.0.0.1", 0, context)).getsockname()[1]
    yield port, callers
    await server.close()


def _allowed(who: str, path: str) -> bool:
    return (path in ANYONE or (path in MESH and who != "nobody")
            or (path in OPERATOR and who == "operator"))


@pytest.mark.parametrize("who", ["nobody", "service", "host", "operator"])
async def test_each_path_answers_200_only_to_its_audience(admin_port, who: str) -> None:
    port, callers = admin_port
    seen = {}
    for path in (*ANYONE, *MESH, *OPERATOR):
        for method in ("HEAD", "GET"):
            # a stream (tap, logs follow) is not asked for: /v1/tap's answer starts with 200
            seen[method, path] = await _status(port, callers[who], method, path)
        seen["GET", path + "?rate=5"] = await _status(port, callers[who], "GET", path + "?rate=5")
    expected = {key: 200 if _allowed(who, key[1].partition("?")[0]) else 403 for key in seen}
    assert seen == expected


@pytest.mark.parametrize("who", ["nobody", "service", "operator"])
async def test_other_spellings_and_methods_never_reach_a_handler(admin_port, who: str) -> None:
    port, callers = admin_port
    for target in VARIANTS:
        assert await _status(port, callers[who], "GET", target) == 404, target
    for path in (*ANYONE, *MESH, *OPERATOR):
        for method in ("POST", "PUT", "DELETE", "OPTIONS", "get"):
            assert await _status(port, callers[who], method, path) == 405, (method, path)
