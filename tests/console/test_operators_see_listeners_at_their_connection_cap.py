"""An operator sees which proxy's listener is full or nearly (its connections against its
`[max_connections]` cap): `vmesh stat` names it in its LISTENERS column and `--json`,
`vmesh check` fails on a full one and warns on one near its cap, with what to do, and the
console's overview lists both under its table.

Real proxies (`vmesh proxy run`) whose outbound listener is capped at 5: `web`'s held full
by five idle connections, `api`'s at four of five (80 %)."""

import contextlib
import json
import shlex
import socket
import sys
from collections.abc import Iterator

import pytest

from tests.console.conftest import REPO, wait_for
from tests.console.test_cli_twins_print_columns_and_json import vmesh
from tests.console.test_console_in_a_real_terminal import Terminal, terminal  # noqa: F401
from tests.integration.mesh import Mesh, ProxyProcess

CAP = 5
HELD = {"web": CAP, "api": CAP - 1}


def hold(proxy: ProxyProcess, count: int, sockets: contextlib.ExitStack) -> None:
    """`count` idle connections to `proxy`'s outbound listener, open until `sockets` closes."""
    for _ in range(count):
        sockets.enter_context(socket.create_connection(("127.0.0.1", proxy.ports["outbound"]),
                                                       timeout=10))
    wait_for(lambda: proxy.metric("tcp_open_connections", listener="outbound") == count, 10,
             f"{count} connections open on {proxy.service}'s outbound listener")


@pytest.fixture
def crowded_mesh(vmesh_root) -> Iterator[Mesh]:
    mesh = Mesh(vmesh_root)
    with contextlib.ExitStack() as sockets:
        try:
            for service, count in HELD.items():
                # idle connections stay open for the whole test
                proxy = mesh.start_proxy(service, 1, idle="300s",
                                         extra=f"[max_connections]\noutbound = {CAP}\n")
                hold(proxy, count, sockets)
            yield mesh
        finally:
            mesh.stop()


def test_stat_names_the_full_listener_and_the_one_near_its_cap(crowded_mesh: Mesh) -> None:
    rows = {row["name"]: row for row in map(json.loads, vmesh("stat", "--json")
                                              .stdout.splitlines())}
    assert rows["web"]["listeners_near_cap"] == [
        {"proxy": "web", "listener": "outbound", "open": 5, "max": 5, "state": "saturated"}]
    assert rows["api"]["listeners_near_cap"] == [
        {"proxy": "api", "listener": "outbound", "open": 4, "max": 5, "state": "near_cap"}]

    result = vmesh("stat")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split()[-1] == "LISTENERS"
    by_name = {line.split()[0]: line.rstrip() for line in lines}
    assert by_name["web"].endswith(" web outbound 5/5 full")
    assert by_name["api"].endswith(" api outbound 4/5 80%")


def test_check_fails_on_the_full_listener_and_warns_near_the_cap(crowded_mesh: Mesh) -> None:
    result = vmesh("check", "--json")
    assert result.returncode == 1, result.stdout + result.stderr  # a listener is full
    findings = [f for f in map(json.loads, result.stdout.splitlines())
                if f["check"] == "listeners"]
    assert [(f["target"], f["status"], f["reason"]) for f in findings] == [
        ("api outbound", "warn", "listeners.near_cap"),
        ("web outbound", "fail", "listeners.saturated")]
    for finding in findings:
        assert "[max_connections] outbound" in finding["hint"]
        assert "LimitNOFILE" in finding["hint"] and "ss -tnp" in finding["hint"]
    assert findings[1]["message"].startswith("full: 5/5 connections")

    text = vmesh("check").stdout
    assert ("[FAIL] listeners web outbound: full: 5/5 connections, accepting none; new ones "
            "wait in the backlog (hint: find who holds the connections with `ss -tnp`") in text


def test_the_overview_lists_the_full_listener_and_the_one_near_its_cap(
    crowded_mesh: Mesh, vmesh_root, terminal: Terminal,  # noqa: F811
) -> None:
    env = f"VMESH_ROOT={shlex.quote(str(vmesh_root))} PYTHONPATH={shlex.quote(str(REPO))}"
    terminal.start(f"cd {shlex.quote(str(REPO))} && env {env} TERM=xterm-256color "
                   f"{shlex.quote(sys.executable)} -m vm_mesh console", width=120)
    terminal.expect("vmesh > overview")
    screen = terminal.expect("web: listener outbound full: 5/5 connections, accepting none")
    assert "api: listener outbound 4/5 connections, 80% of its cap" in screen
    terminal.keys("q")
    wait_for(lambda: not terminal.alive(), 10, "the console to exit")
