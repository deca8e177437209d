"""The tap ring buffer: bounded memory, newest first, and a pause that freezes the view."""

from console.models.tap import TapBuffer, TapFilter
from tests.console.scenes import tap_event


def test_buffer_keeps_only_the_newest_events() -> None:
    buffer = TapBuffer(capacity=100)
    buffer.extend(tap_event(n) for n in range(1_000))
    assert len(buffer) == 100
    assert buffer.received == 1_000
    assert buffer.dropped == 900
    assert [e.id for e in buffer.visible(3)] == ["r999", "r998", "r997"]


def test_visible_applies_the_filter_before_the_limit() -> None:
    buffer = TapBuffer()
    buffer.extend(tap_event(n, status=500 if n % 10 == 0 else 200) for n in range(100))
    buffer.filter = TapFilter.parse("status=5xx")
    assert [e.id for e in buffer.visible(3)] == ["r90", "r80", "r70"]


def test_pause_freezes_what_is_shown_while_events_keep_arriving() -> None:
    buffer = TapBuffer(capacity=50)
    buffer.extend(tap_event(n) for n in range(10))
    buffer.pause()
    buffer.extend(tap_event(n) for n in range(10, 20))
    assert buffer.paused
    assert buffer.visible(1)[0].id == "r9"
    buffer.resume()
    assert buffer.visible(1)[0].id == "r19"


def test_pause_holds_after_more_than_a_buffer_of_events_arrived() -> None:
    buffer = TapBuffer(capacity=50)
    buffer.extend(tap_event(n) for n in range(30))
    buffer.pause()
    buffer.extend(tap_event(n) for n in range(30, 130))  # the ring turned over twice
    assert [e.id for e in buffer.visible(3)] == ["r29", "r28", "r27"]
    assert len(buffer.visible(100)) == 30
    buffer.resume()
    assert [e.id for e in buffer.visible(1)] == ["r129"]
