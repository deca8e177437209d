"""`vmesh console` in a real terminal (tmux): keys in, screen text out via capture-pane."""

import os
import re
import secrets
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.conftest import REPO, wait_for
from tests.support import require_tool

pytestmark = pytest.mark.needs_tool("tmux")


class Terminal:
    """One tmux server of our own (-L) with one window, 80x24 unless told."""

    def __init__(self, tmux: str) -> None:
        self.tmux = tmux
        self.server = f"vmesh-console-{secrets.token_hex(4)}"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.tmux, "-L", self.server, *args], capture_output=True,
                              text=True, check=False, timeout=10)

    def start(self, command: str, width: int = 80, height: int = 24) -> None:
        # COLUMNS and LINES say the window's size: under pytest the command was handed 80
        # and 24, which Textual takes over the size of the window
        result = self.run("new-session", "-d", "-s", "console", "-x", str(width),
                          "-y", str(height), "-e", f"COLUMNS={width}", "-e", f"LINES={height}",
                          command)
        assert result.returncode == 0, result.stderr

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "console").stdout

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "console", *keys)

    def expect(self, text: str, deadline_s: float = 20.0) -> str:
        wait_for(lambda: text in self.screen(), deadline_s, f"{text!r} on screen:\n"
                 + self.screen())
        return self.screen()

    def alive(self) -> bool:
        return self.run("has-session", "-t", "console").returncode == 0

    def close(self) -> None:
        self.run("kill-server")
        # kill-server leaves the socket file of our private server behind.
        tmpdir = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (tmpdir / self.server).unlink(missing_ok=True)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal(require_tool("tmux"))
    yield term
    term.close()


def test_operator_switches_view_filters_tap_opens_detail_and_quits(mesh, traffic, vmesh_root,
                                                                   terminal) -> None:
    """Real proxies with real traffic; keys typed into a real terminal."""
    env = f"VMESH_ROOT={shlex.quote(str(vmesh_root))} PYTHONPATH={shlex.quote(str(REPO))}"
    terminal.start(f"cd {shlex.quote(str(REPO))} && env {env} TERM=xterm-256color "
                   f"{shlex.quote(sys.executable)} -m vm_mesh console")
    terminal.expect("vmesh > overview")
    wait_for(lambda: terminal.screen().count(" ready ") == 3, 20, "three ready proxies")

    terminal.keys(":")
    terminal.keys("tap", "Enter")
    terminal.expect("vmesh > tap")
    terminal.expect(" store ")

    terminal.keys("/")
    terminal.keys("svc=api", "Enter")
    terminal.expect("filter: svc=api")

    def only_api_rows() -> bool:
        rows = [line for line in terminal.screen().splitlines() if " out " in line
                or " in " in line]
        return bool(rows) and all(" api " in line for line in rows)

    wait_for(only_api_rows, 10, "only rows of requests to api")

    terminal.keys("p", "Enter")
    screen = terminal.expect("trace id")
    assert "policy.decision" in screen and "dst.service  api" in screen

    terminal.keys("Escape")
    wait_for(lambda: "trace id" not in terminal.screen(), 10, "detail pane closed")
    terminal.keys("q")
    wait_for(lambda: not terminal.alive(), 10, "the console to exit")


GREYS_256 = {0, 7, 8, 15, 16, 59, 102, 145, 188, 231, *range(232, 256)}


def hues(screen_with_escapes: str) -> set[str]:
    """Colour codes on screen that are not a shade of grey."""
    found = set()
    for match in re.finditer(r"\x1b\[([0-9;]*)m", screen_with_escapes):
        codes = [int(c) for c in match.group(1).split(";") if c]
        i = 0
        while i < len(codes):
            if codes[i] in (38, 48) and codes[i + 1:i + 2] == [5]:
                if codes[i + 2] not in GREYS_256:
                    found.add(f"{codes[i]};5;{codes[i + 2]}")
                i += 3
            elif codes[i] in (38, 48) and codes[i + 1:i + 2] == [2]:
                r, g, b = codes[i + 2:i + 5]
                if not r == g == b:
                    found.add(f"{codes[i]};2;{r};{g};{b}")
                i += 5
            else:
                if 31 <= codes[i] <= 36 or 91 <= codes[i] <= 96:
                    found.add(str(codes[i]))
                i += 1
    return found


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "NO_COLOR"])
def test_no_color_leaves_only_shades_of_grey(start_admin, vmesh_root, terminal,
                                            no_color: bool) -> None:
    start_admin("api")
    env = f"VMESH_ROOT={shlex.quote(str(vmesh_root))} PYTHONPATH={shlex.quote(str(REPO))}"
    env += " NO_COLOR=1" if no_color else ""
    terminal.start(f"cd {shlex.quote(str(REPO))} && env {env} TERM=xterm-256color "
                   f"{shlex.quote(sys.executable)} -m vm_mesh console")
    terminal.expect("ready")
    coloured = terminal.run("capture-pane", "-p", "-e", "-t", "console").stdout
    if no_color:
        assert hues(coloured) == set()
    else:
        assert hues(coloured)  # the same screen has colours without NO_COLOR
    terminal.keys("q")
    wait_for(lambda: not terminal.alive(), 10, "the console to exit")


@pytest.mark.parametrize("quit_key", ["q", "C-c"])
def test_console_without_any_proxy_still_opens_and_quits(vmesh_root, terminal,
                                                         quit_key: str) -> None:
    env = f"VMESH_ROOT={shlex.quote(str(vmesh_root))} PYTHONPATH={shlex.quote(str(REPO))}"
    terminal.start(f"cd {shlex.quote(str(REPO))} && env {env} TERM=xterm-256color "
                   f"{shlex.quote(sys.executable)} -m vm_mesh console")
    terminal.expect("0 proxies")
    terminal.keys(quit_key)
    wait_for(lambda: not terminal.alive(), 10, "the console to exit")
    assert os.environ.get("VMESH_ROOT") == str(vmesh_root)
