"""Admin streams under pressure and at shutdown, over a real unix socket.

A tap reader that stops reading loses events and is told how many, while the
proxy keeps publishing without waiting; closing the admin server ends open
streams with their last chunk instead of cutting them off.
"""

import asyncio
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from proxy.admin import AdminServer
from proxy.events import EventBus, RequestEvent
from proxy.observability import Observability
from tests.integration.admin_support import FixedProxyFacts, eventually

_ids = itertools.count()


class LocalAdmin:
    def __init__(self, server: AdminServer, bus: EventBus, obs: Observability, path: Path):
        self.server, self.bus, self.obs, self.socket_path = server, bus, obs, path

    def client(self) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(uds=str(self.socket_path))
        return httpx.AsyncClient(transport=transport, base_url="http://admin", timeout=10)


@pytest.fixture
async def local_admin(tmp_path: Path) -> AsyncIterator[LocalAdmin]:
    bus = EventBus()
    observability = Observability.attach(bus)
    server = AdminServer(FixedProxyFacts(), observability, trust_domain="vmesh.local")
    socket_path = tmp_path / "run" / "api.sock"
    await server.serve_unix(socket_path)
    try:
        yield LocalAdmin(server, bus, observability, socket_path)
    finally:
        await server.close()


def request_event(path: str = "/items/1") -> RequestEvent:
    return RequestEvent(
        ts=time.time(), id=str(next(_ids)), direction="inbound", src_addr="127.0.0.1:9",
        dst_service="api", method="GET", authority="api", path=path, status=200,
        latency_ms=2.0, tls=True,
    )


async def test_slow_tap_reader_is_told_what_it_lost_and_never_slows_publishing(
    local_admin: LocalAdmin,
) -> None:
    reader, writer = await asyncio.open_unix_connection(str(local_admin.socket_path))
    writer.write(b"GET /v1/tap?rate=10000 HTTP/1.1\r\nHost: admin\r\n\r\n")
    await writer.drain()
    await eventually(lambda: local_admin.obs.tap.subscribers == 1, "tap subscription")
    # Nobody reads the socket while 20000 events are published back to back. Publishing
    # is a plain function call: finishing the loop shows it never waits for the reader.
    for i in range(20_000):
        local_admin.bus.publish(request_event(f"/n/{i}"))
    received = b""
    while b'{"dropped":' not in received:
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        assert chunk, "the stream ended before it reported dropped events"
        received += chunk
    dropped = int(received.split(b'{"dropped":', 1)[1].split(b"}", 1)[0])
    assert 0 < dropped < 20_000
    writer.close()
    await eventually(lambda: local_admin.obs.tap.subscribers == 0, "tap unsubscribed")


async def test_closing_the_server_ends_tap_and_log_streams_with_their_last_chunk(
    local_admin: LocalAdmin,
) -> None:
    async with (
        local_admin.client() as client,
        client.stream("GET", "/v1/tap") as tap,
        client.stream("GET", "/v1/logs", params={"follow": "1"}) as logs,
    ):
        await eventually(lambda: local_admin.obs.tap.subscribers == 1, "tap subscription")
        local_admin.bus.publish(request_event("/before-close"))
        lines = tap.aiter_lines()
        first = json.loads(await asyncio.wait_for(anext(lines), 10))
        assert first["path"] == "/before-close"
        await asyncio.wait_for(local_admin.server.close(), 10)
        # httpx raises RemoteProtocolError if a chunked body is cut off without its end.
        rest = [line async for line in lines]
        await asyncio.wait_for(logs.aread(), 10)
    assert rest == []
    assert local_admin.obs.tap.subscribers == 0


async def test_closing_does_not_wait_for_idle_keep_alive_clients(
    local_admin: LocalAdmin,
) -> None:
    async with local_admin.client() as client:
        assert (await client.get("/live")).status_code == 200
        # the keep-alive connection now idles in the pool; close must not wait for it
        await asyncio.wait_for(local_admin.server.close(), 1.5)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "reason"),
    [
        ("GET", "/v1/nothing", b"", 404, "admin.not_found"),
        ("POST", "/ready", b"{}", 405, "admin.method_not_allowed"),
    ],
)
async def test_wrong_requests_get_json_reasons(
    local_admin: LocalAdmin, method: str, path: str, body: bytes, status: int, reason: str
) -> None:
    async with local_admin.client() as client:
        response = await client.request(method, path, content=body)
    assert response.status_code == status
    assert response.json()["error"] == reason


async def test_oversized_request_body_is_refused(local_admin: LocalAdmin) -> None:
    async with local_admin.client() as client:
        response = await client.post("/ready", content=b"x" * 100_000)
    assert response.status_code == 413


async def test_access_log_line_reaches_the_log_stream(tmp_path: Path) -> None:
    bus = EventBus()
    observability = Observability.attach(bus, access_log=True)
    vmesh = logging.getLogger("vmesh")
    vmesh.addHandler(observability.logs)
    previous = vmesh.level
    vmesh.setLevel(logging.INFO)
    try:
        bus.publish(request_event("/logged"))
        lines = observability.logs.recent("info", limit=10)
    finally:
        vmesh.removeHandler(observability.logs)
        vmesh.setLevel(previous)
    access = [line for line in lines if line.get("logger") == "vmesh.access"]
    assert len(access) == 1
    assert "/logged" in json.dumps(access[0])
