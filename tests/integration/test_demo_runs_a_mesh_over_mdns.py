"""`vmesh demo --no-console` brings up the whole demo mesh, sends traffic through every tier and
stops cleanly, after its --duration or on Ctrl-C, leaving no process or socket behind."""

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.mesh import REPO, wait_until
from tests.integration.supervised import admin_stats

EVERY_TIER = "web 200 > api 200 > store 200"


def demo_command(directory: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "vm_mesh", "demo", "--dir", str(directory), "--no-console",
            "--rate", "20", *options]


def vmesh_check(root: Path) -> subprocess.CompletedProcess[str]:
    """`vmesh check` as run on the host whose VMESH_ROOT is `root`."""
    return subprocess.run([sys.executable, "-m", "vm_mesh", "check"], cwd=REPO,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "VMESH_ROOT": str(root)})


def all_ok(check: subprocess.CompletedProcess[str]) -> bool:
    return check.returncode == 0 and all(line.startswith("[ok  ]")
                                         for line in check.stdout.splitlines())


def processes_under(directory: Path) -> list[str]:
    """Command lines of the live processes whose VMESH_ROOT lies in `directory` (every process
    the demo starts has one: the identity service, the apps and the proxies)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        for variable in environ:
            if variable.startswith(b"VMESH_ROOT=") and \
                    variable.split(b"=", 1)[1].decode().startswith(str(directory)):
                found.append(f"{entry.name}: {cmdline}")
    return found


def summary(stdout: str, label: str) -> dict[str, int]:
    [line] = [line for line in stdout.splitlines() if line.startswith(label)]
    return json.loads(line[len(label):])


def assert_left_nothing(directory: Path) -> None:
    assert processes_under(directory) == []
    sockets = [path for path in directory.rglob("*.sock") if path.is_socket() or path.is_symlink()]
    assert sockets == []


@pytest.fixture
def directory() -> Iterator[Path]:
    """A --dir for a demo, short as `make demo`'s: every instance's admin socket is a unix
    socket's path under it (a pytest tmp_path, deeper under xdist, may be too long)."""
    parent = Path(tempfile.mkdtemp(prefix="vmd-"))
    yield parent / "demo"
    shutil.rmtree(parent)


def test_demo_serves_traffic_through_every_tier_and_cleans_up(directory: Path) -> None:
    result = subprocess.run(demo_command(directory, "--duration", "4"), cwd=REPO,
                            capture_output=True, text=True, timeout=180, env=dict(os.environ))
    assert result.returncode == 0, result.stderr + result.stdout
    assert sum(line.endswith("  ready") for line in result.stdout.splitlines()) == 6
    counts = summary(result.stdout, "responses: ")
    assert counts.get("200", 0) > 20
    assert set(counts) == {"200"}  # web answers 200; downstream failures show in its body
    # web reached api, and api reached store, over mDNS and mTLS
    assert summary(result.stdout, "through the tiers: ").get(EVERY_TIER, 0) > 10, result.stdout
    # every instance got its certificate from the demo's identity service, by token, in the
    # run's own trust domain
    [trust_domain] = {line.rsplit("trust domain ", 1)[1]
                      for line in result.stdout.splitlines() if "trust domain " in line}
    with sqlite3.connect(directory / "ca/var/lib/vmesh/identity/ca.db") as db:
        identities = {row[0] for row in db.execute("SELECT identity FROM certificates")}
    assert identities == {f"spiffe://{trust_domain}/svc/{s}" for s in ("web", "api", "store")}
    assert_left_nothing(directory)


@contextlib.contextmanager
def running_demo(directory: Path) -> Iterator[subprocess.Popen[str]]:
    """A demo as a terminal runs it, once it says it runs: in a session of its own, so that
    a SIGINT to its process group is a terminal's Ctrl-C. One the test left running is
    stopped that way (`--duration` only bounds the test should the signal be lost)."""
    demo = subprocess.Popen(demo_command(directory, "--duration", "120"), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert demo.stdout is not None
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if "Ctrl-C to stop" in line:
                break
        assert "Ctrl-C to stop" in "".join(lines), "".join(lines) + demo.stderr.read()
        yield demo
    finally:
        if demo.poll() is None:  # its children have sessions of their own: Ctrl-C them all
            os.killpg(demo.pid, signal.SIGINT)
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()


def web_answered(directory: Path) -> bool:
    """Whether the running demo in `directory` has had a successful answer from `web` reach
    its load, read over the console's admin sockets. The load sends one request at a time, so
    once web's proxies have answered two requests with success, the first answer was
    in (a proxy counts a request as it answers it, before the caller reads the answer)."""
    console = directory / "console"
    successes = 0
    for link in (console / "run/vmesh").glob("web-*.sock"):
        for row in admin_stats(console, link.stem)["routes"]:
            if row["requests"]:
                successes += round(row["requests"] * (row["success_rate"] or 0))
    return successes >= 2


def ctrl_c(demo: subprocess.Popen[str]) -> tuple[str, str]:
    """Stop a running demo as Ctrl-C does; what it printed."""
    os.killpg(demo.pid, signal.SIGINT)
    return demo.communicate(timeout=60)  # the proxies drain, then the apps stop


def test_ctrl_c_stops_every_process_of_the_demo(directory: Path) -> None:
    with running_demo(directory) as demo:
        assert len(processes_under(directory)) == 13  # identity, 6 apps, 6 proxies
        # what a new user runs next: from the console's host, everything checks out, once the
        # first requests' discovery watches have had their first answer (a warning till then)
        deadline = time.monotonic() + 30
        while not all_ok(check := vmesh_check(directory / "console")):
            assert time.monotonic() < deadline, check.stdout + check.stderr
            assert "[FAIL]" not in check.stdout, check.stdout
        findings = check.stdout.splitlines()
        assert any(line.startswith("[ok  ] identity") for line in findings), check.stdout
        out, err = ctrl_c(demo)
    assert demo.returncode == 0, err
    assert "responses: " in out  # what was answered until Ctrl-C
    assert_left_nothing(directory)


def test_a_second_demo_in_the_same_directory_is_refused_while_the_first_runs(
        directory: Path) -> None:
    with running_demo(directory) as first:
        running = processes_under(directory)
        links = sorted((directory / "console/run/vmesh").iterdir())
        second = subprocess.run(demo_command(directory, "--duration", "1"), cwd=REPO,
                                capture_output=True, text=True, timeout=180)
        assert second.returncode == 1, second.stdout + second.stderr
        assert second.stderr == (f"vmesh: {directory} is in use by a demo that is running; "
                                 "stop that one (q or Ctrl-C) or pass another --dir\n")
        assert processes_under(directory) == running  # the first demo's mesh is untouched
        assert sorted((directory / "console/run/vmesh").iterdir()) == links
        assert (directory / "ca/var/lib/vmesh/identity/ca.db").exists()
        # the first demo goes on serving: its load is answered (on a loaded machine, its first
        # answer can come after the second demo's refusal)
        wait_until(lambda: web_answered(directory), within=60,
                   what="the first demo's load answered")
        out, err = ctrl_c(first)
    assert first.returncode == 0, err
    assert summary(out, "responses: ").get("200", 0) > 0
    assert_left_nothing(directory)
    # once it stopped, the directory is a demo's again: the next run starts afresh in it
    again = subprocess.run(demo_command(directory, "--duration", "1"), cwd=REPO,
                           capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr
    assert_left_nothing(directory)


def test_a_directory_too_deep_for_the_sockets_is_refused_before_anything_starts(
        tmp_path: Path) -> None:
    directory = tmp_path / ("deep-" * 12) / "demo"
    refused = subprocess.run(demo_command(directory, "--duration", "1"), cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    socket_path = directory / "hosts/store-1/run/vmesh/store.sock"
    assert refused.stderr == (
        f"vmesh: {socket_path}: a unix socket's path holds at most 107 bytes, this one has "
        f"{len(str(socket_path))}; pass a shorter --dir\n")
    assert refused.stdout == ""
    assert not directory.exists()  # nothing was started, nothing written
