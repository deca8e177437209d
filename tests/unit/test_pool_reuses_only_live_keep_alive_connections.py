"""The upstream pool hands back idle keep-alive connections, never closed or spent ones."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from proxy.connection import Connection
from proxy.upstream import SWEEP_EVERY, Pool, Upstream, dial


class LoopbackServer:
    """A real listener on loopback that counts accepts and can close its side."""

    def __init__(self) -> None:
        self.accepted = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.connected = asyncio.Event()

    async def handle(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        self.connected.set()


@pytest.fixture
async def served() -> AsyncIterator[tuple[LoopbackServer, Pool]]:
    server = LoopbackServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]

    async def connect(key: str) -> Upstream:
        return Upstream(key, await dial("127.0.0.1", port, within=5, reason="test", what=key))

    pool = Pool(connect)
    yield server, pool
    pool.close()
    for writer in server.writers:
        writer.close()
    listener.close()
    await listener.wait_closed()


async def test_a_released_connection_is_reused(served) -> None:
    server, pool = served
    first, reused = await pool.acquire("a:1")
    assert not reused
    pool.release(first, reusable=True)
    second, reused = await pool.acquire("a:1")
    assert reused and second is first
    assert server.accepted == 1
    assert repr(pool) == "<Pool opened=1 reused=1 idle=0>"


async def test_a_connection_not_kept_alive_is_closed_not_pooled(served) -> None:
    _server, pool = served
    first, _ = await pool.acquire("a:1")
    pool.release(first, reusable=False)
    second, reused = await pool.acquire("a:1")
    assert not reused and second is not first


async def test_a_connection_that_owes_a_request_body_is_closed_not_pooled(served) -> None:
    # the upstream answered a request that waited for 100 (Continue) before its body went:
    # it still waits for that body, and would read the next request as it
    _server, pool = served
    first, _ = await pool.acquire("a:1")
    first.owes_body = True
    pool.release(first, reusable=True)
    second, reused = await pool.acquire("a:1")
    assert not reused and second is not first


async def test_a_connection_the_peer_closed_while_idle_is_not_reused(served) -> None:
    server, pool = served
    first, _ = await pool.acquire("a:1")
    pool.release(first, reusable=True)
    await asyncio.wait_for(server.connected.wait(), 5)
    server.writers[0].close()
    assert await asyncio.wait_for(first.next_event(), 5) is None  # the FIN has arrived
    second, reused = await pool.acquire("a:1")
    assert not reused and second is not first
    assert server.accepted == 2


async def test_a_connection_that_spoke_while_idle_is_not_reused(served) -> None:
    server, pool = served
    first, _ = await pool.acquire("a:1")
    pool.release(first, reusable=True)
    await asyncio.wait_for(server.connected.wait(), 5)
    # an upstream that times the idle connection out answers 408 before it closes
    server.writers[0].write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n")
    await first.connection.wait(5)  # the bytes have arrived
    second, reused = await pool.acquire("a:1")
    assert not reused and second is not first
    assert first.state == "closed"


async def test_connections_are_pooled_per_upstream(served) -> None:
    _server, pool = served
    a, _ = await pool.acquire("a:1")
    pool.release(a, reusable=True)
    _b, reused = await pool.acquire("b:1")
    assert not reused
    assert pool.describe()["idle"] == {"a:1": 1}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_connections_to_upstreams_long_unused_are_closed_and_forgotten() -> None:
    async def connect(key: str) -> Upstream:
        raise AssertionError("not used")

    clock = Clock()
    pool = Pool(connect, idle_timeout=30, clock=clock)
    gone = [Upstream(f"web@198.18.0.{i}:4143", Connection()) for i in range(3)]
    for upstream in gone:  # instances that later left discovery
        pool.release(upstream, reusable=True)
    clock.now += 31
    busy = Upstream("web@198.18.0.9:4143", Connection())
    for _ in range(SWEEP_EVERY):  # the traffic that goes on to the instance still there
        pool.release(busy, reusable=True)
        assert pool.take(busy.key) is busy
    assert pool.describe()["idle"] == {}  # `busy` is in use
    assert {upstream.state for upstream in gone} == {"closed"}


async def test_connections_to_an_instance_that_left_are_closed_idle_or_when_back(served) -> None:
    _server, pool = served
    idle, _ = await pool.acquire("web@198.18.0.1:4143")
    in_flight, _ = await pool.acquire("web@198.18.0.1:4143")
    pool.release(idle, reusable=True)
    assert pool.retire(["web@198.18.0.1:4143"]) == 1  # the instance left discovery
    assert idle.state == "closed"
    pool.release(in_flight, reusable=True)  # its response ended after that
    assert in_flight.state == "closed"
    assert pool.describe()["idle"] == {}


async def test_an_instance_back_in_discovery_has_its_connections_pooled_again(served) -> None:
    _server, pool = served
    pool.retire(["web@198.18.0.1:4143"])
    pool.readmit(["web@198.18.0.1:4143"])
    upstream, _ = await pool.acquire("web@198.18.0.1:4143")
    pool.release(upstream, reusable=True)
    assert pool.describe()["idle"] == {"web@198.18.0.1:4143": 1}
