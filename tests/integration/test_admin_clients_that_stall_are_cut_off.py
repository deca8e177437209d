"""Admin clients that stall, over a real unix socket: a tap reader that stops reading is cut
off after the idle timeout (its subscription ends, the log says why) instead of holding its
connection, and its share of every request's tap work, for ever; a request trickled in a
byte at a time, never idle for long (slowloris), gets 408 once the request timeout is up."""

import asyncio
import json
import logging
import socket
import time
from pathlib import Path

import pytest

from proxy.events import RequestEvent
from tests.integration.admin_support import eventually, local_admin


def _event(n: int) -> RequestEvent:
    return RequestEvent(ts=time.time(), id=str(n), direction="inbound", src_addr="127.0.0.1:9",
                        dst_service="api", method="GET", authority="api",
                        path=f"/items/{n}/" + "x" * 1000, status=200, latency_ms=2.0)


async def test_a_tap_reader_that_stops_reading_is_cut_off_after_the_idle_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vmesh.admin")
    async with local_admin(tmp_path, idle_timeout=0.5) as admin:
        with socket.socket(socket.AF_UNIX) as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.setblocking(False)
            await asyncio.get_running_loop().sock_connect(client, str(admin.socket_path))
            client.send(b"GET /v1/tap?rate=10000 HTTP/1.1\r\nHost: admin\r\n\r\n")
            await eventually(lambda: admin.obs.tap.subscribers == 1, "the tap subscription")
            for n in range(2000):  # a megabyte of lines, far more than the socket holds
                admin.bus.publish(_event(n))
            # the client reads nothing from here on
            await eventually(lambda: admin.obs.tap.subscribers == 0, "the stalled tap's end")
    (cut,) = [r for r in caplog.records if getattr(r, "reason", None) == "admin.write_timeout"]
    assert cut.getMessage() == "admin client stopped reading; connection cut"
    assert getattr(cut, "path", None) == "/v1/tap"


async def _read_to_the_end(client: socket.socket) -> bytes:
    received = b""
    while chunk := await asyncio.get_running_loop().sock_recv(client, 65536):
        received += chunk
    return received


async def test_a_request_trickled_in_slower_than_the_request_timeout_gets_408(
    tmp_path: Path,
) -> None:
    loop = asyncio.get_running_loop()
    async with local_admin(tmp_path, idle_timeout=5, request_timeout=0.5) as admin:
        with socket.socket(socket.AF_UNIX) as client:
            client.setblocking(False)
            await loop.sock_connect(client, str(admin.socket_path))
            answer = asyncio.ensure_future(_read_to_the_end(client))
            # a byte every 0.1 s never leaves the connection idle for its idle timeout
            trickle = b"GET /ready HTTP/1.1\r\nHost: admin\r\nX-Slow: " + b"z" * 60 + b"\r\n\r\n"
            for byte in trickle:
                if answer.done():
                    break
                try:
                    await loop.sock_sendall(client, bytes([byte]))
                except ConnectionError:  # answered and closed before this byte
                    break
                await asyncio.sleep(0.1)
            response = await asyncio.wait_for(answer, 10)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"] == "admin.request_timeout"
