"""A load balancer's `HEAD /ready` probe (HAProxy's `option httpchk HEAD /ready`) gets what
a GET gets, without the body, and the connection goes on; a method the admin API does not
serve gets 405 with the methods it does."""

import asyncio
import gc
import logging
from pathlib import Path

import h11
import pytest

from tests.integration.admin_support import local_admin


class _Client:
    """One keep-alive HTTP/1.1 connection to the admin socket, framed by h11."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h11.Connection(h11.CLIENT)

    async def request(self, method: str, target: str) -> tuple[h11.Response, bytes]:
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        request = h11.Request(method=method, target=target, headers=[("host", "admin")])
        self.writer.write(self.conn.send(request) + self.conn.send(h11.EndOfMessage()))
        response, body = None, b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await asyncio.wait_for(self.reader.read(65536), 10))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                return response, body
            else:
                raise AssertionError(f"unexpected {event!r}")


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/ready", b"application/json"),
        ("/live", b"application/json"),
        ("/metrics", b"text/plain; version=0.0.4; charset=utf-8"),
        ("/v1/stats", b"application/json"),
        ("/v1/tap", b"application/x-ndjson"),  # a stream: its headers, then the end
    ],
)
async def test_head_gets_the_headers_of_a_get_and_the_connection_goes_on(
    tmp_path: Path, path: str, content_type: bytes
) -> None:
    async with local_admin(tmp_path) as admin:
        client = _Client(*await asyncio.open_unix_connection(str(admin.socket_path)))
        head, body = await client.request("HEAD", path)
        after, after_body = await client.request("GET", "/ready")
        client.writer.close()
    assert head.status_code == 200 and body == b""
    assert dict(head.headers)[b"content-type"] == content_type
    assert after.status_code == 200 and after_body == b'{"ready": true, "reason": "listeners up"}\n'
    assert admin.obs.tap.subscribers == 0


async def test_head_ready_declares_the_length_of_the_get_answer(tmp_path: Path) -> None:
    async with local_admin(tmp_path) as admin:
        client = _Client(*await asyncio.open_unix_connection(str(admin.socket_path)))
        head, _ = await client.request("HEAD", "/ready")
        get, body = await client.request("GET", "/ready")
        client.writer.close()
    assert dict(head.headers)[b"content-length"] == str(len(body)).encode()
    assert dict(head.headers)[b"content-type"] == dict(get.headers)[b"content-type"]


async def test_head_probes_leave_nothing_in_the_error_log(tmp_path: Path) -> None:
    async with local_admin(tmp_path) as admin:
        root = logging.getLogger()  # where the proxy keeps its log ring (proxy.server)
        root.addHandler(admin.obs.logs)
        try:
            for _ in range(3):
                client = _Client(*await asyncio.open_unix_connection(str(admin.socket_path)))
                await client.request("HEAD", "/ready")
                client.writer.close()
            gc.collect()  # a task that died with its exception unread is reported now
            client = _Client(*await asyncio.open_unix_connection(str(admin.socket_path)))
            _, errors = await client.request("GET", "/v1/logs?level=error")
            client.writer.close()
        finally:
            root.removeHandler(admin.obs.logs)
    assert errors == b""


@pytest.mark.parametrize("method", ["POST", "DELETE", "OPTIONS"])
async def test_other_methods_are_told_which_are_allowed(tmp_path: Path, method: str) -> None:
    async with local_admin(tmp_path) as admin, admin.client() as client:
        refused = await client.request(method, "/ready")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD"
    assert refused.json()["error"] == "admin.method_not_allowed"
