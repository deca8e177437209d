"""The admin API over a unix socket and over mTLS, read by httpx and curl.

The admin server runs in the test's event loop with a real bus; the test
publishes request events into it as the proxy would.
"""

import asyncio
import json
import logging
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from identity import pki
from proxy.admin import AdminServer
from proxy.events import EventBus, RequestEvent
from proxy.observability import Observability
from tests.integration.admin_support import FixedProxyFacts, client_context, write_identity
from tests.support import require_tool

TD = "vmesh.local"


@pytest.fixture
def pki_dirs(tmp_path: Path) -> dict[str, Path]:
    anchor = pki.create_anchor(TD)
    issuer = pki.create_issuer(anchor, TD)
    foreign_anchor = pki.create_anchor("other.example")
    foreign_issuer = pki.create_issuer(foreign_anchor, "other.example")
    dirs = {
        "server": write_identity(tmp_path / "server", issuer, anchor, f"spiffe://{TD}/svc/api"),
        "operator": write_identity(tmp_path / "op", issuer, anchor, f"spiffe://{TD}/operator/ann"),
        "service": write_identity(tmp_path / "web", issuer, anchor, f"spiffe://{TD}/svc/web"),
        "foreign": write_identity(
            tmp_path / "evil",
            foreign_issuer,
            foreign_anchor,
            "spiffe://other.example/operator/eve",
            "other.example",
        ),
    }
    # the foreign client trusts our anchor (it wants to talk to us), we do not trust its anchor
    pki.write_file(dirs["foreign"] / "bundle.pem", pki.cert_pem(anchor.cert))
    # our server trusts both anchors only so the foreign client gets past TLS to the policy check
    pki.write_file(tmp_path / "both.pem", pki.cert_pem(anchor.cert, foreign_anchor.cert))
    dirs["both"] = tmp_path / "both.pem"
    return dirs


@dataclass
class RunningAdmin:
    """An admin server under test: its bus, observability, socket, port and certificates."""

    bus: EventBus
    observability: Observability
    socket_path: Path
    port: int
    dirs: dict[str, Path]


@pytest.fixture
async def admin(tmp_path: Path, pki_dirs: dict[str, Path]):
    bus = EventBus()
    observability = Observability.attach(bus)
    server = AdminServer(FixedProxyFacts(), observability, trust_domain=TD, instance_id="api-1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(pki_dirs["both"])
    context.load_cert_chain(pki_dirs["server"] / "cert.pem", pki_dirs["server"] / "key.pem")
    socket_path = tmp_path / "run" / "api.sock"
    await server.serve_unix(socket_path)
    port = (await server.serve_tcp("127.0.0.1", 0, context)).getsockname()[1]
    yield RunningAdmin(bus, observability, socket_path, port, pki_dirs)
    await server.close()


def _request_event(i: int, status: int = 200) -> RequestEvent:
    return RequestEvent(
        ts=time.time(),
        id=str(i),
        direction="inbound",
        src_addr="127.0.0.1:9",
        src_id=f"spiffe://{TD}/svc/web",
        dst_service="api",
        method="GET",
        authority="api",
        path=f"/items/{i}",
        status=status,
        latency_ms=3.0,
        tls=True,
    )


def _tcp_client(dirs: dict[str, Path], who: str) -> httpx.AsyncClient:
    bundle = dirs[who] / "bundle.pem"
    return httpx.AsyncClient(verify=client_context(dirs[who], bundle), timeout=10)


async def test_unix_socket_serves_everything_locally(admin) -> None:
    bus, socket_path = admin.bus, admin.socket_path
    for i in range(5):
        bus.publish(_request_event(i, 200 if i else 503))
    transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        assert (await client.get("/ready")).json() == {"ready": True, "reason": "listeners up"}
        stats = (await client.get("/v1/stats?window=60s")).json()
        (route,) = stats["routes"]
        assert route["requests"] == 5 and route["success_rate"] == 0.8
        assert stats["service"] == "api" and stats["instance"] == "api-1"
        assert (await client.get("/v1/config")).json() == {"service": "api"}
        missing = await client.get("/v1/nothing")
        assert missing.status_code == 404 and missing.json()["error"] == "admin.not_found"
        assert (await client.get("/v1/stats?window=soon")).status_code == 400


async def test_operator_gets_tap_service_does_not(admin) -> None:
    port, dirs = admin.port, admin.dirs
    url = f"https://127.0.0.1:{port}"
    async with _tcp_client(dirs, "service") as client:
        assert (await client.get(url + "/metrics")).status_code == 200
        refused = await client.get(url + "/v1/tap")
        assert refused.status_code == 403
        assert refused.json()["error"] == "admin.operator_only"
    async with _tcp_client(dirs, "operator") as client:
        assert (await client.get(url + "/v1/config")).status_code == 200


async def test_foreign_trust_domain_is_refused(admin) -> None:
    port, dirs = admin.port, admin.dirs
    async with _tcp_client(dirs, "foreign") as client:
        refused = await client.get(f"https://127.0.0.1:{port}/metrics")
    assert refused.status_code == 403
    assert refused.json()["error"] == "admin.foreign_identity"


async def test_tap_streams_filtered_events_to_an_operator(admin) -> None:
    bus, port, dirs = admin.bus, admin.port, admin.dirs
    async with (
        _tcp_client(dirs, "operator") as client,
        client.stream("GET", f"https://127.0.0.1:{port}/v1/tap?status=5xx") as response,
    ):
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = response.aiter_lines()

        async def publish() -> None:
            for i in range(20):
                bus.publish(_request_event(i, 503 if i % 2 else 200))
                await asyncio.sleep(0)

        publisher = asyncio.create_task(publish())
        events = [json.loads(await asyncio.wait_for(anext(lines), 10)) for _ in range(10)]
        await publisher
    assert {e["status"] for e in events} == {503}
    assert events[0]["src"]["id"] == f"spiffe://{TD}/svc/web"
    assert set(events[0]) >= {
        "ts",
        "id",
        "direction",
        "src",
        "dst",
        "tls",
        "method",
        "authority",
        "path",
        "route",
        "status",
        "latency_ms",
        "bytes_in",
        "bytes_out",
        "retries",
        "policy",
        "error",
        "trace_id",
    }


async def test_logs_follow_new_lines_at_the_asked_level(admin) -> None:
    socket_path = admin.socket_path
    logger = logging.getLogger("vmesh.test.follow")
    logger.addHandler(admin.observability.logs)
    try:
        await _follow_logs(socket_path, logger)
    finally:
        logger.removeHandler(admin.observability.logs)


async def _follow_logs(socket_path: Path, logger: logging.Logger) -> None:
    logger.warning("before the follow", extra={"n": 0})
    transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://admin", timeout=10
    ) as client:
        async with client.stream("GET", "/v1/logs?follow=1&level=warning") as response:
            lines = response.aiter_lines()
            first = json.loads(await asyncio.wait_for(anext(lines), 10))
            logger.info("too quiet to be shown")
            logger.error("disk full", extra={"n": 1})
            second = json.loads(await asyncio.wait_for(anext(lines), 10))
        bad = await client.get("/v1/logs?level=loud")
    assert first["msg"] == "before the follow" and first["level"] == "warning"
    assert second["msg"] == "disk full" and second["n"] == 1
    assert bad.status_code == 400


async def test_curl_reads_metrics_over_the_unix_socket(admin) -> None:
    curl = require_tool("curl")
    bus, socket_path = admin.bus, admin.socket_path
    bus.publish(_request_event(1))
    process = await asyncio.create_subprocess_exec(
        curl,
        "-sS",
        "--unix-socket",
        str(socket_path),
        "http://admin/metrics",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, stderr
    assert b'request_total{authority="api"' in stdout
