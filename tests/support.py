"""Helpers shared by the test suites."""

import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator

import pytest

from proxy.connection import Connection
from proxy.http1 import RequestHead, RequestReader


def require_tool(name: str) -> str:
    """Path of a system tool the test drives; skip locally, fail under CI when it is missing."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (scripts/install-system-deps.sh installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


# below Linux's ephemeral range (32768-60999): no client socket's source port and no listener
# bound to port 0 lands here, so a port found free stays free until the test binds it
_UNEPHEMERAL_PORTS = range(20000, 32768)


def free_ports(count: int) -> list[int]:
    """Distinct loopback TCP ports that nothing listens on, for a test to bind (or to find
    closed) a moment later."""
    found: list[int] = []
    while len(found) < count:
        port = random.choice(_UNEPHEMERAL_PORTS)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in found:
            found.append(port)
    return found


def free_port() -> int:
    """A loopback TCP port that nothing listens on (see `free_ports`)."""
    return free_ports(1)[0]


async def connected_pair() -> tuple[Connection, socket.socket]:
    """A proxy `Connection` on the running loop and the plain socket at its other end."""
    ours, theirs = socket.socketpair()
    connection = Connection()
    await asyncio.get_running_loop().connect_accepted_socket(lambda: connection, ours)
    return connection, theirs


def follow_json_logs(
    proc: subprocess.Popen[str], sink: list[dict], on_record: Callable[[dict], None]
) -> None:
    """Collect a process's JSON log lines into `sink` from a background thread.

    Each parsed line (a non-JSON line becomes `{"msg": line}`) is appended and then
    passed to `on_record`, which tests use to notice readiness.
    """

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = {"msg": line.rstrip()}
            sink.append(record)
            on_record(record)

    threading.Thread(target=read, daemon=True).start()


def request_head(raw: bytes) -> RequestHead:
    """The head of the request whose bytes are `raw`, as the proxy's parser reads it."""
    reader = RequestReader()
    reader.feed(raw)
    head = reader.next_event()
    assert isinstance(head, RequestHead)
    return head


def client_hello(server_name: str | None, maximum: ssl.TLSVersion | None = None) -> bytes:
    """The first flight of a real TLS client, as a gateway reads it off the wire."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if maximum is not None:
        context.maximum_version = maximum
    client = context.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(),
                              server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


@contextlib.contextmanager
def echo_server() -> Iterator[int]:
    """A port on loopback that sends back what it reads, one connection at a time: an instance
    behind a mesh gateway, which splices bytes and so needs no TLS to carry a connection."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            with connection, contextlib.suppress(OSError):
                while data := connection.recv(65536):
                    connection.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (closing alone does not)
        listener.close()
        thread.join(timeout=5)


def exchange(sock: socket.socket, data: bytes) -> bytes:
    """Send `data`, half-close, and read until the peer closes: all it sent back."""
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received
