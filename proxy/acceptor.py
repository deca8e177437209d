"""A listening socket whose accepted connections are each handed to a coroutine, at most as
many at once as its `ConnectionLimit` allows.

The inbound side does its own TLS handshake on every accepted socket (with
`loop.connect_accepted_socket`), so that a refused handshake raises where it
can be logged and tapped. That needs the raw socket before any byte is read,
which `loop.create_server` does not give on every event loop (uvloop starts
reading before the protocol could pause it). Nor can an `asyncio.Server` stop
accepting for a while and go on: an Acceptor at its cap simply does not accept,
and new connections wait in the kernel's backlog until one of its own ends.

Out of file descriptors (or kernel memory), accept() fails until connections end; the
Acceptor retries every `BACKOFF_S` and logs the failure once per episode, at most one
line per `ACCEPT_FAILURE_LOG_INTERVAL_S` (a token bucket, as the saturation log), each
line counting the failures it left out, and `accepting again` when the episode ends.
"""

import asyncio
import contextlib
import errno
import functools
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from proxy.connection import Connection
from proxy.listener_limits import ConnectionLimit
from vm_mesh.token_bucket import TokenBucket

log = logging.getLogger("vmesh.proxy.acceptor")

# accept() errors that concern one connection or a passing shortage, not the listener
_TRANSIENT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED}
BACKOFF_S = 0.1
ACCEPT_FAILURE_LOG_INTERVAL_S = 60.0


class Acceptor:
    """Accepts connections on TCP `host:port` (or on the listening socket `sock`, e.g. one
    inherited from the proxy before, or a unix socket) until closed, each handed to
    `on_connection` in a task kept in `tasks`, while fewer than `limit`'s cap are open;
    `sockets` as on asyncio.Server. A task that fails with an error nobody handled is a
    bug: logged with its traceback, the listener goes on."""

    def __init__(
        self,
        host: str,
        port: int,
        on_connection: Callable[[socket.socket], Awaitable[None]],
        tasks: set[asyncio.Task[None]],
        limit: ConnectionLimit,
        backlog: int = 1024,
        sock: socket.socket | None = None,
    ) -> None:
        if sock is None:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.create_server((host, port), family=family, backlog=backlog)
        self._sock = sock
        self._sock.setblocking(False)
        self._tcp = sock.family != socket.AF_UNIX
        self._on_connection = on_connection
        self._connections = tasks  # strong references: the loop keeps only weak ones
        self.limit = limit
        self._failure_log = TokenBucket(ACCEPT_FAILURE_LOG_INTERVAL_S, 1, now=time.monotonic())
        self._failures = 0  # of accept() in a row, this episode
        self._failures_unlogged = 0  # since the last line about them
        self._episode_logged = False
        self._loop_task = asyncio.create_task(self._accept_loop())

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self._sock,)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        limit = self.limit
        while True:
            if limit.saturated:
                await limit.room()  # meanwhile the kernel's backlog holds new connections
            try:
                conn, peer = await loop.sock_accept(self._sock)
            except OSError as exc:
                if exc.errno not in _TRANSIENT:
                    log.error("listener stopped", extra={"reason": "accept_failed",
                                                         "listener": limit.listener,
                                                         "detail": str(exc)})
                    return
                self._accept_failed(exc)
                await asyncio.sleep(BACKOFF_S)  # out of descriptors: let connections finish
                continue
            if self._failures:
                self._accepting_again()
            if self._tcp:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            limit.opened()
            task = asyncio.ensure_future(self._on_connection(conn))
            self._connections.add(task)
            task.add_done_callback(functools.partial(self._ended, str(peer)))

    def _accept_failed(self, exc: OSError) -> None:
        """Log a failed accept() if the pace allows (one line a minute at most: the first of
        an episode, unless a line went out within the minute), else count it for the next."""
        self._failures += 1
        if not self._failure_log.take(time.monotonic()):
            self._failures_unlogged += 1
            return
        self._episode_logged = True
        log.error("accept failed", extra={"reason": "accept_failed",
                                          "listener": self.limit.listener, "detail": str(exc),
                                          "failures_unlogged": self._failures_unlogged})
        self._failures_unlogged = 0

    def _accepting_again(self) -> None:
        """The episode of failures is over: say so if it was logged, with what was left out."""
        if self._episode_logged:
            log.info("accepting again", extra={"event": "accept_resumed",
                                               "listener": self.limit.listener,
                                               "failures": self._failures,
                                               "failures_unlogged": self._failures_unlogged})
            self._failures_unlogged = 0
        self._failures = 0
        self._episode_logged = False

    def _ended(self, peer: str, task: "asyncio.Task[None]") -> None:
        self._connections.discard(task)
        self.limit.closed()
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("connection handler failed", extra={"peer": peer}, exc_info=error)

    def close(self) -> None:
        """Stop accepting; connections already accepted go on."""
        self._loop_task.cancel()
        with contextlib.suppress(OSError):
            self._sock.close()


def listen(
    host: str,
    port: int,
    handler: Callable[[Connection], Coroutine[Any, Any, None]],
    tasks: set[asyncio.Task[None]],
    limit: ConnectionLimit,
    sock: socket.socket | None = None,
) -> Acceptor:
    """A TCP listener on `host:port` (or on the listening socket `sock`) each of whose
    connections, a `Connection`, runs `handler` in a task kept in `tasks`; one whose handler
    fails is aborted."""

    async def serve(accepted: socket.socket) -> None:
        connection = Connection()
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: connection, accepted)
        except OSError:
            accepted.close()
            return
        try:
            await handler(connection)
        except Exception:
            connection.abort()
            raise

    return Acceptor(host, port, serve, tasks, limit, sock=sock)
