"""Connections to upstreams (peer proxies over mTLS, or the local app) and their pool.

A connection serves one request at a time and returns to the pool when its
response ended cleanly with keep-alive, so a TLS handshake is paid once per
connection, not per request. When an instance leaves discovery its idle
connections are closed at once (`retire`, on the endpoint update, not per request),
and those in flight to it are closed as they come back. Every `SWEEP_EVERY` releases
the pool closes the connections idle past its timeout and forgets upstreams with
none left, so the instances that came and went over weeks leave no sockets or
entries behind.
"""

import asyncio
import contextlib
import ssl as ssl_module
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from proxy.connection import Connection
from proxy.http1 import Event, ResponseReader
from proxy.retrying import AttemptFailed


class Upstream:
    """One connection to an upstream and the parser of its responses."""

    def __init__(self, key: str, connection: Connection, peer_id: str | None = None) -> None:
        self.key = key
        self.connection = connection
        self.peer_id = peer_id
        self.responses = ResponseReader()
        connection.start(self.responses)
        self.requests = 0
        # a request head went out whose body never did (the answer came first): the
        # upstream still waits for it, so the connection carries nothing more
        self.owes_body = False
        self.state = "active"
        self.idle_since = time.monotonic()
        # the next response event; None when the upstream closed the connection
        self.next_event: Callable[[], Awaitable[Event | None]] = connection.next_event

    @property
    def eof(self) -> bool:
        """The upstream closed its side: the connection cannot carry another request."""
        return self.connection.closed

    @property
    def reusable(self) -> bool:
        """Open, and nothing arrived while idle: bytes an idle upstream sends on its own
        (say, a 408 before it closes) would be taken as the next request's answer."""
        return self.connection.quiet_since_idle()

    def close(self) -> None:
        self.state = "closed"
        self.connection.close()

    def __repr__(self) -> str:
        return f"<Upstream {self.key} {self.state.upper()} requests={self.requests}>"


Connect = Callable[[str], Awaitable[Upstream]]


async def dial(
    host: str,
    port: int,
    *,
    within: float,
    reason: str,
    what: str,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
) -> Connection:
    """Connect (and handshake) within `within` seconds; failures are `AttemptFailed` with
    `<reason>.connect_timeout` or `<reason>.connect_failed` and `what` in the detail."""
    loop = asyncio.get_running_loop()
    connection = Connection()
    try:
        async with asyncio.timeout(within):
            await loop.create_connection(
                lambda: connection,
                host,
                port,
                ssl=ssl,
                server_hostname=server_hostname,
                ssl_handshake_timeout=within if ssl else None,
            )
    except TimeoutError:
        raise AttemptFailed(
            "connect-failure", f"{reason}.connect_timeout: {what} did not answer in time"
        ) from None
    except (ConnectionError, OSError) as exc:
        raise AttemptFailed("connect-failure", f"{reason}.connect_failed: {what}: {exc}") from None
    return connection


SWEEP_EVERY = 1024


class Pool:
    """Idle keep-alive connections per upstream key (`address:port`)."""

    def __init__(
        self,
        connect: Connect,
        max_idle: int = 64,
        idle_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._idle: dict[str, list[Upstream]] = {}
        # upstreams whose instance left discovery: a connection in flight to one is closed
        # when it comes back (looked up only when its key has no idle list, never per request)
        self._retired: set[str] = set()
        self._releases = 0
        self.opened = 0
        self.reused = 0

    async def acquire(self, key: str) -> tuple[Upstream, bool]:
        """A connection to `key` and whether it was reused from the pool."""
        upstream = self.take(key)
        if upstream is not None:
            return upstream, True
        return await self.open(key), False

    def take(self, key: str) -> Upstream | None:
        """An idle connection to `key` that is still good to use, or None (never waits)."""
        idle = self._idle.get(key)
        if not idle:
            return None
        now = self._clock()
        while idle:
            upstream = idle.pop()
            if now - upstream.idle_since < self.idle_timeout and upstream.reusable:
                upstream.state = "active"
                self.reused += 1
                return upstream
            upstream.close()
        return None

    async def open(self, key: str) -> Upstream:
        """A new connection to `key` (`take` found none idle)."""
        upstream = await self._connect(key)
        self.opened += 1
        return upstream

    def release(self, upstream: Upstream, reusable: bool) -> None:
        """Return a connection after its response ended; closed unless `reusable`."""
        self._releases += 1
        if self._releases % SWEEP_EVERY == 0:
            self._sweep()
        idle = self._idle.get(upstream.key)
        if idle is None:
            if upstream.key in self._retired:
                upstream.close()
                return
            idle = self._idle[upstream.key] = []
        if (not reusable or upstream.owes_body or not upstream.connection.settled
                or len(idle) >= self.max_idle):
            upstream.close()
            return
        upstream.state = "idle"
        upstream.idle_since = self._clock()
        upstream.connection.mark_idle()
        idle.append(upstream)

    def retire(self, keys: Iterable[str]) -> int:
        """The instances of `keys` left discovery: close their idle connections now, and each
        in flight to them when it is released; how many were closed now."""
        closed = 0
        for key in keys:
            self._retired.add(key)
            for upstream in self._idle.pop(key, ()):
                upstream.close()
                closed += 1
        return closed

    def readmit(self, keys: Iterable[str]) -> None:
        """The instances of `keys` are in discovery (again): their connections are pooled."""
        self._retired.difference_update(keys)

    def _sweep(self) -> None:
        """Close the connections idle past the timeout (or closed by their peer) and forget
        the upstreams that have none left, and which upstreams were retired (a connection in
        flight to one since then is pooled, and closed by a later sweep)."""
        self._retired.clear()
        now = self._clock()
        for key, idle in list(self._idle.items()):
            kept = []
            for upstream in idle:
                if now - upstream.idle_since < self.idle_timeout and not upstream.eof:
                    kept.append(upstream)
                else:
                    upstream.close()
            if kept:
                self._idle[key] = kept
            else:
                del self._idle[key]

    def close(self) -> None:
        for idle in self._idle.values():
            for upstream in idle:
                with contextlib.suppress(Exception):
                    upstream.close()
        self._idle.clear()

    def describe(self) -> dict[str, Any]:
        return {
            "opened": self.opened,
            "reused": self.reused,
            "idle": {key: len(conns) for key, conns in self._idle.items() if conns},
        }

    def __repr__(self) -> str:
        idle = sum(len(c) for c in self._idle.values())
        return f"<Pool opened={self.opened} reused={self.reused} idle={idle}>"
