"""A long session stays bounded: view switches do not pile up widgets, the tap keeps N events."""

import gc

from textual.widgets._footer import FooterKey

from console.app import ConsoleApp
from console.sources import Sources
from console.state import MeshData
from tests.console.scenes import tap_event


def footer_keys_alive() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, FooterKey))


async def test_view_switches_do_not_keep_the_footer_keys_of_earlier_views() -> None:
    console = ConsoleApp(Sources([]), data=MeshData(tap_capacity=100), live=False,
                         first_view="tap")
    async with console.run_test(size=(80, 24)) as pilot:
        for n in range(40):
            await pilot.press("1", "3")
            console.data.add_tap(tap_event(n))
        console.prune_footer_watchers()  # what the app does every 10 s
        await pilot.pause()
        assert footer_keys_alive() == len(console.query(FooterKey))
        for n in range(40, 1_000):
            console.data.add_tap(tap_event(n))
        assert (len(console.data.tap), console.data.tap.received) == (100, 1_000)
