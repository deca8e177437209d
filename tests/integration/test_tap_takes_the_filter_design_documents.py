"""`GET /v1/tap?filter=...`, as DESIGN.md writes it: the filter's terms (`key=value`,
separated by spaces, keys as the tap's own parameters) select what the stream carries."""

import asyncio
import json
import time
from pathlib import Path

import pytest

from proxy.events import RequestEvent
from tests.integration.admin_support import local_admin


def _event(i: int, path: str, status: int) -> RequestEvent:
    return RequestEvent(ts=time.time(), id=str(i), direction="inbound", src_addr="127.0.0.1:9",
                        dst_service="api", method="GET", authority="api", path=path,
                        status=status, latency_ms=2.0)


async def test_tap_streams_what_its_filter_selects(tmp_path: Path) -> None:
    async with (
        local_admin(tmp_path) as admin,
        admin.client() as client,
        client.stream("GET", "/v1/tap", params={"filter": "status=5xx path=/items"}) as tap,
    ):
        assert tap.status_code == 200
        for i, (path, status) in enumerate([("/items/1", 200), ("/other", 503),
                                            ("/items/2", 503)]):
            admin.bus.publish(_event(i, path, status))
        first = json.loads(await asyncio.wait_for(anext(tap.aiter_lines()), 10))
    assert (first["path"], first["status"]) == ("/items/2", 503)


@pytest.mark.parametrize(
    "query",
    [
        {"filter": "colour=red"},
        {"filter": "status"},
        {"filter": "status=5x"},
        {"filter": "status=5xx", "status": "4xx"},
    ],
)
async def test_a_filter_the_tap_cannot_apply_is_refused(tmp_path: Path, query: dict) -> None:
    async with local_admin(tmp_path) as admin, admin.client() as client:
        refused = await client.get("/v1/tap", params=query)
    assert refused.status_code == 400
    assert refused.json()["error"] == "admin.bad_tap_filter"


@pytest.mark.parametrize("rate", ["fast", "nan", "1e"])
async def test_a_rate_that_is_no_number_is_refused_by_name(tmp_path: Path, rate: str) -> None:
    async with local_admin(tmp_path) as admin, admin.client() as client:
        refused = await client.get("/v1/tap", params={"rate": rate})
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "admin.bad_tap_filter",
        "detail": f"rate {rate!r}: expected events a second, like 100",
    }
