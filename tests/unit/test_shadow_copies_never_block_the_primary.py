"""Mirrored copies run in the background, bounded, and their failures stay there."""

import asyncio

from proxy.shadow import DROPPED, FAILED, SENT, TIMED_OUT, ShadowDispatcher


async def test_failing_and_stalled_shadows_are_counted_not_raised() -> None:
    outcomes: list[tuple[str, str]] = []
    dispatcher = ShadowDispatcher(max_in_flight=2, timeout=0.05,
                                  on_outcome=lambda _, s, o: outcomes.append((s, o)))
    stall = asyncio.Event()

    async def fail() -> None:
        raise ConnectionRefusedError("shadow is down")

    assert dispatcher.submit("api", "shadow", fail)
    assert dispatcher.submit("api", "shadow", stall.wait)
    assert not dispatcher.submit("api", "shadow", fail)  # bounded: the third copy is dropped
    await dispatcher.drain()
    assert sorted(o for _, o in outcomes) == sorted([FAILED, TIMED_OUT, DROPPED])

    async def ok() -> int:
        return 200

    assert dispatcher.submit("api", "shadow", ok)
    await dispatcher.drain()
    assert dispatcher.counts[SENT] == 1
    assert repr(dispatcher) == (
        "<ShadowDispatcher in_flight=0 sent=1 failed=1 timeout=1 dropped=1>"
    )


async def test_close_cancels_running_copies() -> None:
    dispatcher = ShadowDispatcher()
    dispatcher.submit("api", "shadow", asyncio.Event().wait)
    await dispatcher.close()
    assert dispatcher.in_flight == 0
