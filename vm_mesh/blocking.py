"""Calls that block for long (Consul's blocking queries) run off the event loop, each in a
thread of its own.

The loop's default executor has a few workers (six on two cores): a handful of queries that
each wait up to `wait` for a change would hold all of them, and everything else queued there
(a new service's first query, a registration) would wait behind them. A daemon thread per
call also never holds up the process's exit.
"""

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def in_own_thread(
    call: Callable[..., T], *args: Any, name: str = "blocking"
) -> "asyncio.Future[T]":
    """Run `call(*args)` in a new daemon thread; the future gets its result or exception.
    Cancelling the future does not stop the call: its outcome is then dropped."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(outcome: Callable[[], None]) -> None:
        def settle() -> None:
            if not future.done():  # cancelled meanwhile: the outcome is dropped
                outcome()

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle)

    def run() -> None:
        try:
            result = call(*args)
        except BaseException as exc:  # handed to the awaiting task, as to_thread would
            error = exc
            deliver(lambda: future.set_exception(error))
        else:
            deliver(lambda: future.set_result(result))

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
