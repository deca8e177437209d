"""Starting and stopping the real processes of policy integration tests."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Process:
    """A child process started by a test; `port` is what it reported listening on."""

    proc: subprocess.Popen[str]
    port: int

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start(args: list[str], ready_prefix: str = "LISTENING", timeout: float = 20.0,
          env: dict[str, str] | None = None, prefix: Sequence[str] = ()) -> Process:
    """Start `[prefix...] python args...`; wait for the line `<ready_prefix> <port>` on stdout."""
    proc = subprocess.Popen(
        [*prefix, sys.executable, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith(ready_prefix):
            return Process(proc, int(line.split()[1]))
    Process(proc, 0).stop()
    raise RuntimeError(f"{args} did not report {ready_prefix}: {''.join(seen)[-2000:]}")


def start_backend(name: str, prefix: Sequence[str] = (), **options: object) -> Process:
    """A test-controlled backend (tests/integration/backend.py) on a free loopback port."""
    args = ["-m", "tests.integration.backend", "--name", name]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return start(args, prefix=prefix)


def start_echo(name: str, prefix: Sequence[str] = (), listen: str = "127.0.0.1") -> Process:
    """A TCP app (tests/integration/echo.py) that says `name`, then echoes, on a free port of
    `listen`."""
    return start(["-m", "tests.integration.echo", "--name", name, "--listen", listen],
                 prefix=prefix)


def answered_by(port: int) -> str:
    """Send a line through the listener at `port` and end the input: the name of the app that
    answered (its echo checked), or what the client saw instead (`closed`, `reset`)."""
    received = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"ping\n")
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                received += chunk
    except ConnectionResetError:
        return "reset"
    if not received:
        return "closed"
    name, _, echo = received.decode().partition("\n")
    assert echo == "ping\n", received
    return name


def held_open(port: int) -> tuple[socket.socket, str]:
    """A connection through the listener at `port`, held open: its socket (the caller's to
    close) and the name of the app it reached, which that app said first (the client speaks
    first, so that protocol detection tells it opaque at once)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    received = b""
    try:
        sock.sendall(b"ping\n")
        while not received.endswith(b"\n"):
            chunk = sock.recv(1)
            assert chunk, f"closed before the app said its name: {received!r}"
            received += chunk
    except BaseException:
        sock.close()
        raise
    return sock, received.decode().rstrip("\n")


def mapped_files(pid: int) -> set[str]:
    """The files mapped into a running process's memory (its libraries among them)."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {fields[5] for line in maps if len(fields := line.split(maxsplit=5)) == 6}
