"""A followed log that breaks off (the connection is cut, the proxy stays up) goes on from its
last line: no line twice, none missing; `/v1/logs` takes `since` and `limit=0` for that."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from console.app import ConsoleApp
from console.sources import default_sources
from tests.console.conftest import REPO, wait_for
from tests.console.pilot import until
from tests.console.relay import Relay
from vm_mesh import paths


def get_logs(socket: Path, query: str) -> httpx.Response:
    transport = httpx.HTTPTransport(uds=str(socket))
    with httpx.Client(transport=transport, base_url="http://admin", timeout=5) as client:
        return client.get(f"/v1/logs?{query}")


def logs_of(socket: Path, query: str) -> list[dict]:
    response = get_logs(socket, query)
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def chatter(lines: list[dict]) -> list[dict]:
    """The simulated proxy's own numbered lines ("api log N", two a second)."""
    return [line for line in lines if line["msg"].startswith("api log ")]


def test_logs_take_a_time_to_start_from_and_a_limit_of_none(start_admin) -> None:
    start_admin("api")
    socket = paths.admin_socket("api")
    backlog = wait_for(lambda: (lines := chatter(logs_of(socket, "level=info")))[2:] and lines,
                       10, "three numbered lines")
    assert logs_of(socket, "level=info&limit=0") == []
    since = backlog[1]["ts"]
    resumed = chatter(logs_of(socket, f"level=info&since={since!r}"))
    assert resumed[: len(backlog) - 1] == backlog[1:]
    assert all(line["ts"] >= since for line in logs_of(socket, f"since={since!r}"))
    bad = get_logs(socket, "since=yesterday")
    assert bad.status_code == 400 and "admin.bad_log_query" in bad.text
    assert "since 'yesterday': expected a unix time" in bad.text


def test_logs_follow_goes_on_after_a_cut_without_repeating_a_line(start_admin,
                                                                 vmesh_root: Path) -> None:
    start_admin("api")
    relay = Relay(paths.admin_socket("api"), listen=vmesh_root / "relay.sock")
    follow = subprocess.Popen(
        [sys.executable, "-m", "vm_mesh", "logs", "--follow", "--json", "--no-local",
         "--admin", str(vmesh_root / "relay.sock")],
        cwd=REPO, env=os.environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[dict] = queue.Queue()
    assert follow.stdout is not None
    threading.Thread(target=lambda: [lines.put(json.loads(x)) for x in follow.stdout],
                     daemon=True).start()

    def numbers_until(last: int) -> list[int]:
        seen = []
        while not seen or seen[-1] < last:
            line = lines.get(timeout=20)
            if line["msg"].startswith("api log "):
                seen.append(line["n"])
        return seen

    try:
        before = numbers_until(3)
        relay.cut()  # `vmesh logs` opens the stream again after 1 s: two lines are logged
        after = numbers_until(before[-1] + 6)
    finally:
        follow.kill()
        follow.wait(timeout=10)
        relay.close()
    numbers = before + after
    assert numbers == list(range(numbers[0], numbers[-1] + 1))


async def test_the_logs_view_goes_on_after_a_cut_without_repeating_a_line(
        start_admin, vmesh_root: Path) -> None:
    start_admin("api")
    relay = Relay(paths.admin_socket("api"), listen=vmesh_root / "relay.sock")
    console = ConsoleApp(default_sources([str(vmesh_root / "relay.sock")], local=False))

    def numbers() -> list[int]:
        return [line.extra["n"] for line in console.data.logs.visible()
                if line.msg.startswith("api log ")]

    try:
        async with console.run_test(size=(160, 48)) as pilot:
            await pilot.press("6")
            await until(pilot, lambda: len(numbers()) >= 4, "four numbered lines")
            relay.cut()
            cut_at = numbers()[-1]
            await until(pilot, lambda: numbers()[-1] >= cut_at + 6, "lines after the cut")
            shown = numbers()
    finally:
        relay.close()
    assert shown == list(range(shown[0], shown[-1] + 1))
