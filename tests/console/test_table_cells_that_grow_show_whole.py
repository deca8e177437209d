"""A table cell whose text grows between two refreshes (an upstream refused fails over, the
rows the same) shows whole on the next one: its column widens, as it would for a new row."""

import html
import re

from console.api import parse_endpoints
from console.app import ConsoleApp
from console.sources import Sources
from tests.console.scenes import endpoints_json, scene


def screen_text(console: ConsoleApp) -> str:
    """What the screen shows, its text runs in order (spaces as spaces)."""
    svg = console.export_screenshot()
    runs = re.findall(r"<text [^>]*>([^<]*)</text>", svg)
    return "".join(html.unescape(run) for run in runs).replace("\xa0", " ")


async def test_a_failover_detail_shows_whole_where_a_shorter_one_was() -> None:
    data = scene()
    failed_over = data.endpoints["web"]
    refused = endpoints_json()  # the same rows, api's detail shorter than any other's
    refused["upstreams"][0]["failover"] = None
    refused["upstreams"][0]["refused"] = {"reason": "x", "detail": "refused"}
    data.endpoints["web"] = parse_endpoints(refused)
    console = ConsoleApp(Sources([]), first_view="endpoints", data=data, live=False)
    async with console.run_test(size=(160, 30)) as pilot:
        assert "gateway api.east.vmesh.local" in screen_text(console)
        data.endpoints["web"] = failed_over  # the next poll: api fails over to api.east
        console.tick()
        await pilot.pause()
        assert "to api.east since 07:56:00 (no_endpoints)" in screen_text(console)
