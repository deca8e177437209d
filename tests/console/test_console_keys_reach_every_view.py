"""Keys: number keys and the command palette switch views; `?` lists every key of a view."""

import pytest
from textual.binding import Binding
from textual.widgets import Static

from console.app import VIEWS, ConsoleApp
from console.screens import HelpScreen
from console.sources import Sources
from console.views import VIEW_CLASSES
from tests.console.scenes import scene


def frozen_app(view: str = "overview") -> ConsoleApp:
    return ConsoleApp(Sources([]), first_view=view, data=scene(), live=False)


async def test_number_keys_switch_to_each_view_in_order() -> None:
    app = frozen_app()
    async with app.run_test(size=(80, 24)) as pilot:
        for number, name in enumerate(VIEWS, start=1):
            await pilot.press(str(number))
            assert app.view.id == name
            assert f"vmesh > {name}" in str(app.query_one("#crumbs", Static).render())


async def test_command_palette_offers_every_view() -> None:
    app = frozen_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+p", *"View: edges")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert app.view.id == "edges"


@pytest.mark.parametrize("view", VIEWS)
async def test_help_lists_every_key_of_the_view(view: str) -> None:
    app = frozen_app(view)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-keys", Static).render())
        bindings = [b for b in (*ConsoleApp.BINDINGS, *VIEW_CLASSES[view].BINDINGS)
                    if isinstance(b, Binding) and b.show]
        for binding in bindings:
            assert f"{binding.key_display or binding.key}" in text
            assert binding.description in text
        for name in VIEWS:
            assert f":{name}" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
