"""`/v1/stats` gives each route and upstream its requests in flight: those started and not
finished when it answers, at the proxy the app calls (the upstream's row) and at the one that
serves the app (the route's row). A row shows while its requests are in flight though none has
completed in the window, and a request leaves the count however it ends, also when its client
gave up on it."""

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration.mesh import Mesh, ProxyProcess, wait_until
from tests.integration.processes import Process, start_backend

HELD = 3


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[ProxyProcess, ProxyProcess, Process]]:
    """`front` (whose app calls `api`) and `api`, whose app holds requests when told to."""
    mesh = Mesh(tmp_path)
    app = start_backend("api")
    try:
        api = mesh.start_proxy("api", app.port)
        front = mesh.start_proxy("front", 1)
        yield front, api, app
    finally:
        mesh.stop()
        app.stop()


def hold(app: Process, holding: bool) -> None:
    httpx.post(f"http://127.0.0.1:{app.port}/_control", json={"hold": holding},
               timeout=10).raise_for_status()


def held(app: Process) -> int:
    return httpx.get(f"http://127.0.0.1:{app.port}/_stats", timeout=10).json()["held"]


def row(proxy: ProxyProcess, direction: str) -> tuple[int, int] | None:
    """(in_flight, requests) of the proxy's row for `api`, None while it has none."""
    with proxy.admin() as admin:
        stats = admin.get("/v1/stats").json()
    rows = stats["routes"] if direction == "inbound" else stats["upstreams"]
    found = [r for r in rows if (r["direction"], r["service"], r["route"])
             == (direction, "api", "default")]
    return (found[0]["in_flight"], found[0]["requests"]) if found else None


def call_api(front: ProxyProcess) -> int:
    return httpx.get(f"http://{front.outbound}/items", headers={"host": "api"},
                     timeout=30).status_code


def test_held_requests_are_in_flight_on_their_upstream_and_route_until_answered(
    mesh: tuple[ProxyProcess, ProxyProcess, Process],
) -> None:
    front, api, app = mesh
    hold(app, True)
    with ThreadPoolExecutor(HELD) as pool:
        answers = [pool.submit(call_api, front) for _ in range(HELD)]
        wait_until(lambda: held(app) == HELD, what="the requests held at the app")
        while_held = row(front, "outbound"), row(api, "inbound")
        hold(app, False)
        statuses = [answer.result(timeout=30) for answer in answers]

    assert while_held == ((HELD, 0), (HELD, 0))  # in flight, none completed yet
    assert statuses == [200] * HELD
    wait_until(lambda: (row(front, "outbound"), row(api, "inbound")) == ((0, HELD), (0, HELD)),
               what="the answered requests counted as completed, none in flight")


def test_a_request_whose_client_gave_up_leaves_the_count_when_it_ends(
    mesh: tuple[ProxyProcess, ProxyProcess, Process],
) -> None:
    front, api, app = mesh
    hold(app, True)
    host, port = front.outbound.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(b"GET /items HTTP/1.1\r\nHost: api\r\n\r\n")
        wait_until(lambda: held(app) == 1, what="the request held at the app")
        while_held = row(front, "outbound"), row(api, "inbound")
    hold(app, False)  # the answer now goes to a client that is gone

    assert while_held == ((1, 0), (1, 0))
    wait_until(lambda: (row(front, "outbound"), row(api, "inbound")) == ((0, 1), (0, 1)),
               what="the abandoned request out of the count")
