"""A relay between the console and an admin API, doing what a network or a busy proxy can do
to it: answer late (each connection's first answer held for a while) or cut every connection
(a blip) while both ends stay up. Real sockets, a thread per direction."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

# A TLS client sends two flights (ClientHello; then its certificate and Finished) before its
# handshake is done: what the server sends after the client's second write is an answer.
HANDSHAKE_WRITES = 2


class Relay:
    """Accepts on `listen` (a unix socket path) or on a free loopback port, and relays each
    connection to `target` (a unix socket path, or host and port). With `hold_answers_s`, the
    first answer on each connection (after a TLS handshake, which is not held) comes that
    much later."""

    def __init__(self, target: Path | tuple[str, int], *, listen: Path | None = None,
                 hold_answers_s: float = 0.0) -> None:
        self.target = target
        self.hold_answers_s = hold_answers_s
        if listen is not None:
            self._server = socket.socket(socket.AF_UNIX)
            self._server.bind(str(listen))
        else:
            self._server = socket.create_server(("127.0.0.1", 0))
        self._server.listen()
        self.port = self._server.getsockname()[1] if listen is None else 0
        self._live: set[socket.socket] = set()
        self.accepted = 0  # connections so far
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        """Break every connection under way; new ones are relayed as before."""
        with self._lock:
            live, self._live = self._live, set()
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._server.close()
        self.cut()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # closed
                return
            self.accepted += 1
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            if isinstance(self.target, Path):
                upstream = socket.socket(socket.AF_UNIX)
                upstream.connect(str(self.target))
            else:
                upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        with self._lock:
            self._live |= {client, upstream}
        writes = [0]  # the client's, so far
        threading.Thread(target=self._answers, args=(upstream, client, writes),
                         daemon=True).start()
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                writes[0] += 1
                upstream.sendall(data)
            upstream.shutdown(socket.SHUT_WR)

    def _answers(self, upstream: socket.socket, client: socket.socket, writes: list[int]) -> None:
        held = not self.hold_answers_s
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if not held and writes[0] >= HANDSHAKE_WRITES:
                    time.sleep(self.hold_answers_s)  # the late answer this relay stands for
                    held = True
                client.sendall(data)
            client.shutdown(socket.SHUT_WR)
