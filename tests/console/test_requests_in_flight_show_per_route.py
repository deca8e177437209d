"""Requests in flight, as `/v1/stats` counts them per route and upstream, in the console's top
view (a line per route, the proxies reporting it added up) and in `vmesh stat`: a request its
app holds shows while it is held and leaves the count once it is answered."""

import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from console.app import ConsoleApp
from console.sources import default_sources
from tests.console.conftest import wait_for
from tests.console.pilot import table_rows, until
from tests.console.test_cli_twins_print_columns_and_json import vmesh
from tests.integration.mesh import Mesh, ProxyProcess
from tests.integration.processes import Process, start_backend

API_LINES = {("out", "api", "default"), ("inb", "api", "default")}  # web's upstream, api's route


@pytest.fixture
def held(vmesh_root) -> Iterator[tuple[ProxyProcess, Process]]:
    """`web`, whose app calls `api`, and api's app holding every request until released."""
    mesh = Mesh(vmesh_root)
    app = start_backend("api")
    try:
        mesh.start_proxy("api", app.port)
        web = mesh.start_proxy("web", 1)
        control(app, hold=True)
        yield web, app
    finally:
        control(app, hold=False)
        mesh.stop()
        app.stop()


def control(app: Process, **mode: object) -> None:
    httpx.post(f"http://127.0.0.1:{app.port}/_control", json=mode, timeout=10).raise_for_status()


def held_at_app(app: Process) -> int:
    return httpx.get(f"http://127.0.0.1:{app.port}/_stats", timeout=10).json()["held"]


def call_api(web: ProxyProcess) -> tuple[threading.Thread, list[int]]:
    """One request from web's app to api, in a thread; its status lands in the list."""
    statuses: list[int] = []

    def call() -> None:
        statuses.append(httpx.get(f"http://{web.outbound}/items", headers={"host": "api"},
                                  timeout=30).status_code)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, statuses


async def test_top_shows_a_held_request_in_flight_on_its_route_and_upstream_until_answered(
        held: tuple[ProxyProcess, Process]) -> None:
    web, app = held
    console = ConsoleApp(default_sources(), first_view="top")
    async with console.run_test(size=(80, 24)) as pilot:
        routes = console.view.query_one("#routes")

        def in_flight() -> dict[tuple[str, str, str], str]:
            return {(r[0], r[1], r[2]): r[7] for r in table_rows(routes)}

        thread, statuses = call_api(web)
        await until(pilot, lambda: held_at_app(app) == 1, "the request held at api's app")
        await until(pilot, lambda: in_flight() == dict.fromkeys(API_LINES, "1"),
                    "the held request in flight on web's upstream and api's route")
        control(app, hold=False)
        thread.join(timeout=30)
        assert statuses == [200]
        await until(pilot, lambda: in_flight() == dict.fromkeys(API_LINES, "0"),
                    "the answered request out of flight")


def test_stat_shows_a_held_request_in_flight_at_its_service_until_answered(
        held: tuple[ProxyProcess, Process]) -> None:
    web, app = held

    def api_row() -> tuple[str, dict]:
        text, as_json = vmesh("stat").stdout, vmesh("stat", "--json").stdout
        header, *lines = text.splitlines()
        row = next(dict(zip(header.split(), line.split(), strict=True)) for line in lines
                   if line.split()[0] == "api")
        return row["IN_FLIGHT"], next(r for r in map(json.loads, as_json.splitlines())
                                      if r["name"] == "api")["in_flight"]

    thread, statuses = call_api(web)
    wait_for(lambda: held_at_app(app) == 1, 15, "the request held at api's app")
    assert api_row() == ("1", 1)
    control(app, hold=False)
    thread.join(timeout=30)
    assert statuses == [200]
    wait_for(lambda: api_row() == ("0", 0), 15, "the answered request out of flight")
