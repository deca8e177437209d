"""A proxy that serves all the taps or log follows it may at once refuses one more with 503
`admin.too_many_streams`: `vmesh top` and `vmesh logs -f` print that reason and the proxy's
whole advice once, rather than a cut-off JSON body, and the console's tap and logs views
name the proxy and the reason while they wait for a stream to free up."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import httpx

from console.app import ConsoleApp
from console.sources import default_sources
from console.streams import RETRY_MAX_S
from console.views import Bar, LogsView, TapView
from proxy.admin import MAX_LOG_FOLLOWS, MAX_TAPS
from tests.console.conftest import REPO
from tests.console.pilot import until
from tests.console.test_cli_twins_print_columns_and_json import vmesh
from vm_mesh import paths

ADVICE = "close one (another console or script may hold them) and try again"


@contextlib.contextmanager
def streams_held(path: str, params: dict[str, str], count: int):
    """`count` streams of `path` open on the `api` proxy's admin socket while inside."""
    transport = httpx.HTTPTransport(uds=str(paths.admin_socket("api")))
    with (httpx.Client(transport=transport, base_url="http://admin", timeout=10) as client,
          contextlib.ExitStack() as held):
        for _ in range(count):
            assert held.enter_context(client.stream("GET", path, params=params)).status_code == 200
        yield


def bar(console: ConsoleApp, view: type[TapView | LogsView]) -> str:
    return str(console.query_one(view).query_one(Bar).render())


def test_top_names_the_cap_and_what_to_do(start_admin) -> None:
    start_admin("api")
    with streams_held("/v1/tap", {}, MAX_TAPS):
        top = vmesh("top", "--duration", "2.5")  # long enough for a retry
    assert top.returncode == 1  # no source answered
    (line,) = top.stderr.splitlines()  # once, however often it is tried again
    assert line.startswith("vmesh: api: /v1/tap answered 503: this proxy serves at most "
                           f"{MAX_TAPS} tap streams")
    assert line.endswith(f"{ADVICE} [admin.too_many_streams]")


def test_a_log_follow_names_the_cap_and_what_to_do(start_admin) -> None:
    start_admin("api")
    with streams_held("/v1/logs", {"follow": "1", "limit": "0"}, MAX_LOG_FOLLOWS):
        follow = subprocess.Popen([sys.executable, "-m", "vm_mesh", "logs", "-f"], cwd=REPO,
                                  env=os.environ, stderr=subprocess.PIPE, text=True)
        try:
            line = follow.stderr.readline()
        finally:
            follow.kill()
            follow.wait(timeout=10)
            follow.stderr.close()
    assert line.startswith("vmesh: api: /v1/logs answered 503: this proxy serves at most "
                           f"{MAX_LOG_FOLLOWS} log follow streams")
    assert line.rstrip("\n").endswith(f"{ADVICE} [admin.too_many_streams]")


async def test_the_console_names_the_proxy_and_the_reason_until_a_stream_is_free(
        start_admin) -> None:
    start_admin("api")
    console = ConsoleApp(default_sources())
    with contextlib.ExitStack() as held:
        held.enter_context(streams_held("/v1/tap", {}, MAX_TAPS))
        held.enter_context(streams_held("/v1/logs", {"follow": "1", "limit": "0"},
                                        MAX_LOG_FOLLOWS))
        async with console.run_test(size=(160, 48)) as pilot:
            await pilot.press("3")
            await until(pilot, lambda: "no tap from api (admin.too_many_streams)"
                        in bar(console, TapView), "the tap refused, and why")
            await pilot.press("6")
            await until(pilot, lambda: "no logs from api (admin.too_many_streams)"
                        in bar(console, LogsView), "the log follow refused, and why")
            held.close()  # streams free up: the console's get in when they try again
            await until(pilot, lambda: "no logs from" not in bar(console, LogsView),
                        "the note gone", deadline_s=RETRY_MAX_S + 5)
            await pilot.press("3")
            await until(pilot, lambda: "no tap from" not in bar(console, TapView),
                        "the note gone", deadline_s=RETRY_MAX_S + 5)
