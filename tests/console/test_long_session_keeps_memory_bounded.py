"""A long session stays bounded: view switches do not pile up widgets, the tap keeps N events."""

import gc

from textual.widget import Widget

from console.app import ConsoleApp
from console.sources import Sources
from console.state import MeshData
from tests.console.scenes import tap_event


def widgets_alive() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Widget))


async def test_view_switches_make_no_new_widgets() -> None:
    console = ConsoleApp(Sources([]), data=MeshData(tap_capacity=100), live=False,
                         first_view="tap")
    async with console.run_test(size=(80, 24)) as pilot:
        for n in range(100):  # a full tap table: its scroll bars are made once, now
            console.data.add_tap(tap_event(n))
        await pilot.press("1", "3", "1", "3")
        await pilot.pause()
        before = widgets_alive()
        for n in range(100, 140):
            await pilot.press("1", "3")
            console.data.add_tap(tap_event(n))
        await pilot.pause()
        assert widgets_alive() == before  # no garbage for the collector to find per switch
        for n in range(140, 1_000):
            console.data.add_tap(tap_event(n))
        assert (len(console.data.tap), console.data.tap.received) == (100, 1_000)
