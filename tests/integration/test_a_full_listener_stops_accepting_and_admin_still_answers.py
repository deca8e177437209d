"""A listener holds at most its cap of connections (HAProxy's maxconn): at the cap the proxy
stops accepting and the next connection waits in the kernel's backlog, unserved, until one of
the open ones closes; `/metrics` and `/v1/stats` show the listener full, and the proxy logs
it. A flood that would take every file descriptor the proxy has fills only the data plane's
caps (shares of RLIMIT_NOFILE by default), so the admin API still answers."""

import contextlib
import select
import socket

from tests.integration.mesh import Mesh, ProxyProcess, wait_full, wait_until
from tests.support import require_tool

REQUEST = b"GET / HTTP/1.1\r\nHost: nowhere\r\n\r\n"
CAP = 3
# descriptors the flooded proxy may open; the flood is more than that
NOFILE = 256
FLOOD = 400


def connect(proxy: ProxyProcess, sockets: contextlib.ExitStack) -> socket.socket:
    """A TCP connection to `proxy`'s outbound port, closed with `sockets`."""
    return sockets.enter_context(socket.create_connection(("127.0.0.1", proxy.ports["outbound"]),
                                                          timeout=10))


def answer_head(sock: socket.socket) -> bytes:
    """The first bytes of the answer on `sock` (10 s at most)."""
    sock.settimeout(10)
    return sock.recv(65536)


def test_the_connection_over_the_cap_waits_until_one_closes(mesh: Mesh) -> None:
    proxy = mesh.start_proxy("web", 1, extra=f"[max_connections]\noutbound = {CAP}\n")
    with contextlib.ExitStack() as sockets:
        held = [connect(proxy, sockets) for _ in range(CAP)]
        wait_full(proxy, "outbound", CAP)

        waiting = connect(proxy, sockets)  # the kernel takes it into the backlog
        waiting.sendall(REQUEST)
        # the connections the proxy holds are served meanwhile
        held[0].sendall(REQUEST)
        assert answer_head(held[0]).startswith(b"HTTP/1.1 ")
        readable, _, _ = select.select([waiting], [], [], 1.0)
        assert readable == [], "the connection over the cap was served"
        assert proxy.metric("tcp_open_connections", listener="outbound") == CAP

        held[1].close()
        assert answer_head(waiting).startswith(b"HTTP/1.1 ")

        held[2].close()
        wait_until(lambda: proxy.metric("tcp_listener_saturated", listener="outbound") == 0,
                   what="the outbound listener below its cap")
        proxy.wait_for_log(lambda line: line.get("event") == "listener_resumed")


def test_admin_answers_while_a_flood_fills_the_data_plane(mesh: Mesh) -> None:
    prlimit = require_tool("prlimit")
    proxy = mesh.start_proxy("web", 1, prefix=[prlimit, f"--nofile={NOFILE}:{NOFILE}", "--"])
    with contextlib.ExitStack() as sockets:
        flood = [connect(proxy, sockets) for _ in range(FLOOD)]
        wait_until(lambda: proxy.listener("outbound")["saturated"],
                   what="the outbound listener full")
        cap = proxy.listener("outbound")["max"]
        assert cap < NOFILE  # a share of the proxy's descriptors, not all of them
        with proxy.admin() as admin:
            assert admin.get("/ready").json() == {"ready": True, "reason": "ok"}
            assert "tcp_listener_saturated" in admin.get("/metrics").text
        assert proxy.metric("tcp_open_connections", listener="outbound") == cap
        assert proxy.metric("tcp_listener_saturated", listener="outbound") == 1
        assert proxy.metric("tcp_open_connections", listener="inbound") == 0
        # and the connections it holds are served
        flood[0].sendall(REQUEST)
        assert answer_head(flood[0]).startswith(b"HTTP/1.1 ")
