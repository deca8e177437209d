"""A proxy out of file descriptors (EMFILE) cannot accept: its listener retries every
`BACKOFF_S` until connections end. It says so once, not at every retry: one `accept failed`
line for the episode, and when it accepts again one line counting the failures it left out,
so the log does not flood just when the host is in trouble."""

import contextlib
import socket
import time

from proxy.acceptor import BACKOFF_S
from tests.integration.mesh import Mesh, ProxyProcess
from tests.support import require_tool

NOFILE = 128  # descriptors the proxy may open: fewer than the connections below
CONNECTIONS = 160
RETRIES_HELD = 10  # retries of accept() the episode lasts at least


def accept_failures(proxy: ProxyProcess) -> list[dict]:
    return [line for line in proxy.logs if line.get("msg") == "accept failed"]


def test_an_episode_out_of_descriptors_is_logged_once_with_the_failures_it_left_out(
    mesh: Mesh,
) -> None:
    prlimit = require_tool("prlimit")
    # a cap above the descriptors the proxy has: accept() itself fails, the cap never stops it
    proxy = mesh.start_proxy("web", 1, extra="[max_connections]\noutbound = 1000\n",
                             prefix=[prlimit, f"--nofile={NOFILE}:{NOFILE}", "--"])
    with contextlib.ExitStack() as sockets:
        held = [sockets.enter_context(socket.create_connection(
            ("127.0.0.1", proxy.ports["outbound"]), timeout=10)) for _ in range(CONNECTIONS)]
        proxy.wait_for_log(lambda line: line.get("msg") == "accept failed")
        # the listener retries every BACKOFF_S while out of descriptors; no event marks a retry
        time.sleep(RETRIES_HELD * BACKOFF_S)
        for sock in held[: CONNECTIONS // 2]:  # the proxy closes its ends: descriptors free
            sock.close()
        resumed = proxy.wait_for_log(lambda line: line.get("event") == "accept_resumed")
    failures = accept_failures(proxy)
    assert len(failures) == 1, f"{len(failures)} lines for one episode"
    assert (failures[0]["listener"], failures[0]["reason"]) == ("outbound", "accept_failed")
    assert "Too many open files" in failures[0]["detail"]
    assert resumed["listener"] == "outbound"
    assert resumed["failures_unlogged"] >= 1
