"""Pilot tests: each view of `vmesh console` against admin APIs of running processes."""

import pytest
from textual.widgets import DataTable, Input, Log, Static

from console.app import ConsoleApp
from console.screens import HelpScreen, TapDetail
from console.sources import default_sources
from tests.console.pilot import column, table_rows, until


@pytest.fixture
def three_proxies(start_admin):
    return {name: start_admin(name, rate=15) for name in ("api", "store", "web")}


async def type_in_prompt(console: ConsoleApp, pilot, key: str, text: str) -> None:
    """Open the `:` or `/` prompt, put `text` in it and press enter.

    Pilot waits for the app to be idle after every key, which a streaming app
    rarely is; typing key by key is covered once here and in the tmux test.
    """
    await pilot.press(key)
    console.query_one("#prompt", Input).value = text
    await pilot.press("enter")


def app() -> ConsoleApp:
    return ConsoleApp(default_sources())


def view_table(console: ConsoleApp) -> DataTable:
    return console.view.query_one(DataTable)


async def test_overview_shows_every_proxy_ready_with_metrics(three_proxies) -> None:
    console = app()
    async with console.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: column(view_table(console), "STATE") == ["ready"] * 3,
                    "three ready proxies")

        def failures_seen() -> bool:  # simulated traffic fails 1 request in 10
            rates = column(view_table(console), "SUCCESS")
            return all(r != "-" and 80.0 <= float(r.removesuffix("%")) < 100.0 for r in rates)

        await until(pilot, failures_seen, "golden metrics with failures of every proxy")
        rows = table_rows(view_table(console))
        assert [r[0] for r in rows] == ["api", "store", "web"]
        for row in rows:
            assert float(row[2]) > 0 and row[4].endswith("ms") and row[6] == "0.1.0"


async def test_one_of_three_proxies_killed_is_marked_unreachable_others_update(
        three_proxies) -> None:
    console = app()
    async with console.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: column(view_table(console), "STATE") == ["ready"] * 3,
                    "three ready proxies")
        three_proxies["store"].kill()
        await until(pilot, lambda: column(view_table(console), "STATE")[1] == "unreachable",
                    "store marked unreachable")
        problems = str(console.view.query_one("#problems", Static).render())
        assert "store: connection to" in problems and "[admin.connect_refused]" in problems
        seen = {n: console.data.statuses[n].last_ok for n in ("api", "web")}
        tapped = console.data.tap.received
        await until(pilot, lambda: all(console.data.statuses[n].last_ok > seen[n]
                                       for n in ("api", "web"))
                    and console.data.tap.received > tapped + 10, "the others to keep updating")
        assert column(view_table(console), "STATE") == ["ready", "unreachable", "ready"]
        assert "1 unreachable (store)" in str(console.query_one("#crumbs", Static).render())


async def test_tap_streams_filters_pauses_and_opens_detail(three_proxies) -> None:
    console = app()
    async with console.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: view_table(console).row_count > 20, "tap rows")
        assert set(column(view_table(console), "PROXY")) == {"api", "store", "web"}

        await type_in_prompt(console, pilot, "slash", "svc=web status=5xx")
        await until(pilot, lambda: view_table(console).row_count > 0
                    and set(column(view_table(console), "ST")) == {"503"}
                    and set(column(view_table(console), "PROXY")) == {"web"}, "filtered rows")

        await pilot.press("p")
        frozen = table_rows(view_table(console))
        received = console.data.tap.received
        await until(pilot, lambda: console.data.tap.received > received + 30, "more events")
        assert table_rows(view_table(console)) == frozen
        assert "PAUSED" in str(console.view.query_one(Static).render())

        await pilot.press("enter")
        assert isinstance(console.screen, TapDetail)
        fields = str(console.screen.query_one("#detail-fields", Static).render())
        for label, value in console.screen.event.fields():  # every field of the tap event
            assert f"{label}  {value}" in fields
        assert "status  503" in fields
        await pilot.press("escape")
        assert not isinstance(console.screen, TapDetail)
        await pilot.press("p")
        assert not console.data.tap.paused


async def test_bad_tap_filter_is_reported_and_keeps_the_prompt(three_proxies) -> None:
    console = app()
    async with console.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await type_in_prompt(console, pilot, "slash", "colour=red")
        await pilot.pause()
        prompt = console.query_one("#prompt", Input)
        assert prompt.has_class("shown") and prompt.value == "colour=red"
        assert "unknown filter key 'colour'" in str(prompt.border_subtitle)
        await pilot.press("escape")
        assert not prompt.has_class("shown")
        assert str(console.data.tap.filter) == ""


async def test_top_ranks_routes_and_changes_order(three_proxies) -> None:
    console = app()
    async with console.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: view_table(console).row_count >= 10, "top rows")
        assert set(column(view_table(console), "SOURCE")) == {"api", "store", "web", "client"}
        await pilot.press("s", "s")
        await pilot.pause()
        worst = [float(x.removesuffix("ms")) for x in column(view_table(console), "WORST")]
        assert worst == sorted(worst, reverse=True)
        assert "sorted by latency" in str(console.view.query_one(Static).render())


async def test_edges_show_mtls_between_services(three_proxies) -> None:
    console = app()
    async with console.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        expected = [  # outbound requests of each proxy to store, inbound ones from `client`
            ["api", "store", "api", "store", "yes"], ["client", "api", "client", "-", "yes"],
            ["client", "store", "client", "-", "yes"], ["client", "web", "client", "-", "yes"],
            ["store", "store", "store", "store", "yes"], ["web", "store", "web", "store", "yes"]]
        await until(pilot, lambda: [r[:5] for r in table_rows(view_table(console))] == expected,
                    "six edges with identities")


async def test_logs_follow_and_filter_by_service_and_level(three_proxies) -> None:
    console = app()
    async with console.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        log = console.view.query_one(Log)
        await until(pilot, lambda: log.line_count > 6, "log lines")
        await type_in_prompt(console, pilot, "slash", "svc=api")
        await pilot.press("l", "l")
        await until(pilot, lambda: log.line_count > 2, "api warnings")
        assert all(" WARNING api " in line for line in log.lines)


async def test_views_switch_by_colon_command_and_help_lists_keys(three_proxies) -> None:
    console = app()
    async with console.run_test(size=(80, 24)) as pilot:
        await pilot.press("colon", *"cert", "enter")  # typed key by key once
        assert console.view.id == "certs"
        await type_in_prompt(console, pilot, "colon", "nope")
        assert console.view.id == "certs"
        await pilot.press("escape", "3", "question_mark")
        assert isinstance(console.screen, HelpScreen)
        keys = str(console.screen.query_one("#help-keys", Static).render())
        for expected in ("Pause", "Detail", "Filter", "1 or :overview", "8 or :checks", "ctrl+p"):
            assert expected in keys
        await pilot.press("escape")
        await type_in_prompt(console, pilot, "colon", "q")
        await pilot.pause()
    assert console.return_code == 0
