"""A proxy serves a bounded number of tap streams and of log follows at once: every tap
subscriber is asked about every request the proxy carries, so a script gone wrong that keeps
opening taps must not slow the data plane without bound. One stream over the cap gets 503
`admin.too_many_streams` naming the cap; the streams open go on, and once one closes a new
one gets in."""

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.admin import MAX_LOG_FOLLOWS, MAX_TAPS
from tests.integration.mesh import Mesh, ProxyProcess, wait_until

STREAMS = {
    "/v1/tap": (MAX_TAPS, {}),
    "/v1/logs": (MAX_LOG_FOLLOWS, {"follow": "1", "limit": "0"}),
}


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[ProxyProcess]:
    mesh = Mesh(tmp_path)
    try:
        yield mesh.start_proxy("api", 1)
    finally:
        mesh.stop()


def open_stream(streams: contextlib.ExitStack, client: httpx.Client, path: str) -> httpx.Response:
    """`GET path` as a stream, its answer's head read; it stays open until `streams` closes."""
    return streams.enter_context(client.stream("GET", path, params=STREAMS[path][1]))


@pytest.mark.parametrize("path", list(STREAMS))
def test_one_stream_over_the_cap_is_refused_and_a_closed_one_makes_room(
    proxy: ProxyProcess, path: str
) -> None:
    cap = STREAMS[path][0]
    with proxy.admin() as client, contextlib.ExitStack() as streams:
        opened = [open_stream(streams, client, path) for _ in range(cap)]
        assert [r.status_code for r in opened] == [200] * cap
        over = open_stream(streams, client, path)
        assert over.status_code == 503
        body = json.loads(over.read())
        assert body["error"] == "admin.too_many_streams"
        assert f"at most {cap} " in body["detail"]
        proxy.wait_for_log(lambda line: line.get("reason") == "admin.too_many_streams")
        # the streams open go on: the refusal's own log line reaches every follower, and a
        # request the proxy carries reaches every tap
        httpx.get(f"http://{proxy.outbound}/", headers={"Host": "nowhere"}, timeout=10)
        for response in opened:
            assert next(response.iter_lines())
        # the other kind of stream, and a log read whole, are not counted against this cap
        other = next(p for p in STREAMS if p != path)
        assert open_stream(streams, client, other).status_code == 200
        assert client.get("/v1/logs", params={"limit": "1"}).status_code == 200

        opened[0].close()

        def room_again() -> bool:
            with contextlib.ExitStack() as attempt:
                if open_stream(attempt, client, path).status_code != 200:
                    return False
                streams.push(attempt.pop_all())
                return True

        wait_until(room_again, what="a new stream after one closed")
