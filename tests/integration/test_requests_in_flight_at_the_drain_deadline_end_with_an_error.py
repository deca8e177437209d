"""A request still in flight when its proxy's drain deadline passes ends with an error that
its caller sees and the stopping proxy records, on either proxy: one with no response head
sent yet is answered 503 `proxy.drain_timeout`, one whose response is streaming is cut, so
its caller sees a truncated response, never a clean end. Either way the proxy prints its
access log line with that error and counts it in the drain's warning before it exits 0."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration.mesh import Mesh, ProxyProcess, wait_until
from tests.integration.processes import Process, start_backend

STALLED = 1000  # bytes of the stalled response that come, of twice as many announced


@pytest.fixture(params=["front", "api"])
def mesh(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ProxyProcess, ProxyProcess, Process]]:
    """`front` (whose app calls `api`), the proxy the test stops (`front`, whose outbound side
    the caller talks to, or `api`, whose inbound side `front` sends to) and api's app, which
    holds requests when told to. Both proxies drain for 1 s at most and print their access
    log."""
    mesh = Mesh(tmp_path)
    app = start_backend("api")
    try:
        api = mesh.start_proxy("api", app.port, extra="access_log = true", drain="1s")
        front = mesh.start_proxy("front", 1, extra="access_log = true", drain="1s")
        yield front, front if request.param == "front" else api, app
    finally:
        mesh.stop()
        app.stop()


def hold(app: Process) -> None:
    httpx.post(f"http://127.0.0.1:{app.port}/_control", json={"hold": True},
               timeout=10).raise_for_status()


def held(app: Process) -> int:
    return httpx.get(f"http://127.0.0.1:{app.port}/_stats", timeout=10).json()["held"]


def stopped_at_its_deadline(proxy: ProxyProcess) -> dict:
    """SIGTERM `proxy` (its request outlives the drain); once it exited 0, the access log
    line it printed for the request."""
    assert proxy.stop(within=20) == 0
    logged = proxy.wait_for_log(lambda line: line.get("logger") == "vmesh.access")["request"]
    drain = proxy.wait_for_log(lambda line: line["msg"].startswith("drain timeout"))
    assert (drain["in_flight"], drain["requests_cut"]) == (1, 1)
    return logged


def test_a_request_unanswered_at_the_drain_deadline_is_answered_503_drain_timeout(
    mesh: tuple[ProxyProcess, ProxyProcess, Process],
) -> None:
    front, proxy, app = mesh
    hold(app)
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(httpx.get, f"http://{front.outbound}/items",
                             headers={"host": "api"}, timeout=30)
        wait_until(lambda: held(app) == 1, what="the request held at the app")
        logged = stopped_at_its_deadline(proxy)
        response = answer.result(timeout=30)

    assert (response.status_code, response.headers["vmesh-error"]) == (
        503, "proxy.drain_timeout")
    assert response.text.startswith(f"vmesh {proxy.service}-")  # the proxy that stopped says why
    if proxy is front:  # the caller's own connection ends with the proxy
        assert response.headers["connection"] == "close"
    assert (logged["path"], logged["status"], logged["error"]) == (
        "/items", 503, "proxy.drain_timeout")


def test_a_response_streaming_at_the_drain_deadline_is_cut_short_for_its_caller(
    mesh: tuple[ProxyProcess, ProxyProcess, Process],
) -> None:
    front, proxy, _ = mesh
    url = f"http://{front.outbound}/_stall/{STALLED}"  # half its body, then silence
    with httpx.stream("GET", url, headers={"host": "api"}, timeout=30) as response:
        assert response.headers["content-length"] == str(2 * STALLED)
        body = response.iter_bytes()
        received = len(next(body))
        while received < STALLED:
            received += len(next(body))
        logged = stopped_at_its_deadline(proxy)
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):  # no clean end
            for chunk in body:
                received += len(chunk)
    assert received < 2 * STALLED
    assert (logged["path"], logged["status"], logged["error"]) == (
        f"/_stall/{STALLED}", 200, "proxy.drain_timeout")
