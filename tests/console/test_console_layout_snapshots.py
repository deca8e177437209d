"""Layout of every view at 80x24 (an SSH session) and 160x48, from a frozen scene.

The content is pinned (tests/console/scenes.py: three proxies, one unreachable,
an expired leaf, traffic and logs) so the snapshots show layout, not timing.
Review `pytest --snapshot-update` output in the HTML report before accepting.
"""

import pytest

from console.app import VIEWS, ConsoleApp
from console.sources import Sources
from tests.console.scenes import scene

SIZES = [(80, 24), (160, 48)]


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "160x48"])
@pytest.mark.parametrize("view", VIEWS)
def test_view_layout(view: str, size: tuple[int, int], snap_compare, no_cursor_blink) -> None:
    app = ConsoleApp(Sources([]), first_view=view, data=scene(), live=False)
    assert snap_compare(app, terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "160x48"])
def test_tap_detail_layout(size: tuple[int, int], snap_compare, no_cursor_blink) -> None:
    app = ConsoleApp(Sources([]), first_view="tap", data=scene(), live=False)
    assert snap_compare(app, press=["down", "enter"], terminal_size=size)


def test_tap_filter_prompt_layout(snap_compare, no_cursor_blink) -> None:
    app = ConsoleApp(Sources([]), first_view="tap", data=scene(), live=False)
    assert snap_compare(app, press=["slash", *"status=5xx"], terminal_size=(80, 24))


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "160x48"])
def test_overview_of_a_service_with_instances_layout(size: tuple[int, int], snap_compare,
                                                     no_cursor_blink) -> None:
    app = ConsoleApp(Sources([]), first_view="overview", data=scene(api_instances=2),
                     live=False)
    assert snap_compare(app, terminal_size=size)
