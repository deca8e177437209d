"""A listening socket whose accepted connections are each handed to a coroutine.

The inbound side does its own TLS handshake on every accepted socket (with
`loop.connect_accepted_socket`), so that a refused handshake raises where it
can be logged and tapped. That needs the raw socket before any byte is read,
which `loop.create_server` does not give on every event loop (uvloop starts
reading before the protocol could pause it).
"""

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Awaitable, Callable

log = logging.getLogger("vmesh.proxy.acceptor")

# accept() errors that concern one connection or a passing shortage, not the listener
_TRANSIENT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED}
BACKOFF_S = 0.1


class Acceptor:
    """Accepts TCP connections on `host:port` (or on the listening socket `sock`, e.g. one
    inherited from the proxy before) until closed, each handed to `on_connection` in a task
    kept in `tasks`; `sockets` as on asyncio.Server."""

    def __init__(
        self,
        host: str,
        port: int,
        on_connection: Callable[[socket.socket], Awaitable[None]],
        tasks: set[asyncio.Task[None]],
        backlog: int = 1024,
        sock: socket.socket | None = None,
    ) -> None:
        if sock is None:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.create_server((host, port), family=family, backlog=backlog)
        self._sock = sock
        self._sock.setblocking(False)
        self._on_connection = on_connection
        self._connections = tasks  # strong references: the loop keeps only weak ones
        self._loop_task = asyncio.create_task(self._accept_loop())

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self._sock,)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError as exc:
                if exc.errno not in _TRANSIENT:
                    log.error("listener stopped", extra={"reason": "accept_failed",
                                                         "detail": str(exc)})
                    return
                log.error("accept failed", extra={"reason": "accept_failed", "detail": str(exc)})
                await asyncio.sleep(BACKOFF_S)  # out of descriptors: let connections finish
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = asyncio.ensure_future(self._on_connection(conn))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    def close(self) -> None:
        """Stop accepting; connections already accepted go on."""
        self._loop_task.cancel()
        with contextlib.suppress(OSError):
            self._sock.close()
