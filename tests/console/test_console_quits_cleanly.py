"""Quitting: the console's periodic jobs that fire while it shuts down do nothing.

Timers outlive the widgets by a moment at exit; a job that looked a widget up
then failed, and the operator saw a traceback after quitting.
"""

from console.app import ConsoleApp
from console.sources import Sources
from tests.console.scenes import scene


async def test_periodic_jobs_after_the_widgets_are_gone_do_nothing() -> None:
    console = ConsoleApp(Sources([]), data=scene(), live=False, first_view="hosts")
    async with console.run_test(size=(80, 24)) as pilot:
        await pilot.press("q")
    assert not console.is_running
    for job in (console.tick, console.sample_hosts):
        job()  # as their timers would call them
    assert console.return_code == 0
