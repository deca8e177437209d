"""A connection's wait times out at its own deadline, whatever earlier waits asked for."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from proxy.connection import Connection
from proxy.upstream import dial


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Connection, asyncio.StreamWriter]]:
    accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(writer)

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    connection = await dial("127.0.0.1", port, within=5, reason="test", what="loopback")
    server = await accepted.get()
    yield connection, server
    connection.close()
    server.close()
    listener.close()
    await listener.wait_closed()


async def test_a_short_wait_after_a_long_one_times_out(pair) -> None:
    connection, server = pair
    waiting = asyncio.ensure_future(connection.wait(60))
    await asyncio.sleep(0)
    server.write(b"x")
    await waiting  # bytes came: the long wait ended without timing out
    with pytest.raises(TimeoutError):
        await connection.wait(0.01)


async def test_a_wait_that_bytes_end_does_not_time_out_later(pair) -> None:
    connection, server = pair
    for _ in range(3):
        waiting = asyncio.ensure_future(connection.wait(0.05))
        await asyncio.sleep(0)
        server.write(b"x")
        await waiting
    await asyncio.sleep(0.1)  # past the first deadlines, with no wait running
    waiting = asyncio.ensure_future(connection.wait(0.05))
    await asyncio.sleep(0)
    server.write(b"y")
    await waiting
    assert connection.early == b"xxxy"


async def test_a_wait_without_deadline_outlasts_an_earlier_deadline(pair) -> None:
    connection, server = pair
    waiting = asyncio.ensure_future(connection.wait(0.01))
    await asyncio.sleep(0)
    server.write(b"x")
    await waiting
    untimed = asyncio.ensure_future(connection.wait(None))
    await asyncio.sleep(0.05)
    assert not untimed.done()
    server.write(b"y")
    await untimed
