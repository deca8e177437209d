"""A proxy that serves all the taps or log follows it may at once refuses one more with 503
`admin.too_many_streams`: `vmesh top` and `vmesh logs -f` print its reason and its whole
advice once, rather than a cut-off JSON body, and wait for a stream to free up."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import httpx

from proxy.admin import MAX_LOG_FOLLOWS, MAX_TAPS
from tests.console.conftest import REPO
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


def test_top_names_the_cap_and_what_to_do(start_admin) -> None:
    start_admin("api")
    with streams_held("/v1/tap", {}, MAX_TAPS):
        top = vmesh("top", "--duration", "2.5")  # long enough for a retry
    assert top.returncode == 1  # no source answered
    (line,) = top.stderr.splitlines()  # once, however often it is tried again
    assert line.startswith("vmesh: api: /v1/tap answered 503 admin.too_many_streams: ")
    assert f"at most {MAX_TAPS} tap streams" in line
    assert line.endswith(f"{ADVICE} [admin.http_503]")


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
    assert line.startswith("vmesh: api: /v1/logs answered 503 admin.too_many_streams: ")
    assert line.rstrip("\n").endswith(f"{ADVICE} [admin.http_503]")
