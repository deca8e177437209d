"""TCP keep-alive on the connections between hosts.

A peer host that vanishes (power cut, network partition, a VM paused) sends no
FIN or RST. Without probes a pooled connection to it, or an opaque tunnel
through it, stays open for ever, and so does the caller waiting on it. As
linkerd2-proxy does, every mesh hop probes after 10 s without traffic; here a
peer that answers none of 3 probes 5 s apart is given up about 25 s later.
"""

import socket
from typing import Any

IDLE_S = 10
INTERVAL_S = 5
PROBES = 3


def keep_alive(sock: Any) -> None:
    """Turn on keep-alive probes on a connected TCP socket (a `socket.socket` or the socket
    an asyncio transport's `get_extra_info("socket")` gives)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, IDLE_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, INTERVAL_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, PROBES)
