"""A connection handler that fails with an error nobody handled is a bug: the proxy logs it
with its traceback, closes that connection, and goes on serving the next ones."""

import asyncio
import logging

import pytest

from proxy.acceptor import listen
from proxy.connection import Connection
from proxy.listener_limits import ConnectionLimit


async def test_the_failure_is_logged_the_connection_closed_and_the_next_one_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    served: list[int] = []

    async def handler(connection: Connection) -> None:
        served.append(len(served) + 1)
        if len(served) == 1:
            raise RuntimeError("a bug in the request path")
        connection.write(b"hello\n")
        connection.close()

    tasks: set[asyncio.Task[None]] = set()
    server = listen("127.0.0.1", 0, handler, tasks, ConnectionLimit("test", 8))
    port = server.sockets[0].getsockname()[1]
    try:
        with caplog.at_level(logging.ERROR, logger="vmesh.proxy"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing sent
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.read(), 5) == b"hello\n"
            writer.close()
        [record] = [r for r in caplog.records if r.getMessage() == "connection handler failed"]
        assert record.exc_info is not None
        assert str(record.exc_info[1]) == "a bug in the request path"
        assert record.peer.startswith("('127.0.0.1'")  # type: ignore[attr-defined]
        assert not tasks
    finally:
        server.close()
