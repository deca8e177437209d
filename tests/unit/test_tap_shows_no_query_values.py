"""A tap event shows the request's query with its keys and without its values, however it
is read: the proxy's tap line and `to_tap()` (the access log), and the console's reading of
a tap line, even one from a proxy of an earlier release that sent the values. A tap's path
filter sees what the tap shows, so no filter can probe a token a character at a time."""

import json

from console.api import TapEvent
from console.cli import tap_lines
from proxy.events import RequestEvent
from proxy.tap import TapFilter

TARGET = "/items?access_token=s3cr3t&page=2&flag"
SHOWN = "/items?access_token=REDACTED&page=REDACTED&flag"


def _event(path: str) -> RequestEvent:
    return RequestEvent(ts=1_700_000_000.0, id="web-1:1", direction="inbound",
                        src_addr="127.0.0.1:5000", method="GET", path=path,
                        dst_service="web", status=200, latency_ms=1.0)


def test_the_tap_line_and_the_access_log_show_keys_not_values() -> None:
    event = _event(TARGET)
    line = event.tap_line()
    assert json.loads(line)["path"] == event.to_tap()["path"] == SHOWN
    assert b"s3cr3t" not in line
    assert event.path == TARGET  # spans split the query off themselves


def test_a_path_without_a_query_is_shown_as_it_is() -> None:
    assert json.loads(_event("/items/7").tap_line())["path"] == "/items/7"


def test_a_path_filter_matches_what_the_tap_shows() -> None:
    event = _event(TARGET)
    assert TapFilter(path_prefix="/items").matches(event)
    assert TapFilter(path_prefix="/items?access_token=REDACTED").matches(event)
    assert not TapFilter(path_prefix="/items?access_token=s").matches(event)


def test_the_console_shows_no_values_even_from_an_older_proxy() -> None:
    older = {**_event("/").to_tap(), "path": TARGET}  # as a proxy before redaction sent it
    event = TapEvent.from_json("web", older)
    assert event.path == SHOWN
    assert dict(event.fields())["path"] == SHOWN
    assert "s3cr3t" not in "\n".join(tap_lines(event))
