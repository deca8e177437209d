"""The logs view: lowest level, one proxy, search text; bounded buffer."""

import pytest

from console.api import LogLine
from console.models.logs import LogBuffer, LogFilter, next_level


def line(proxy: str, level: str, msg: str) -> LogLine:
    return LogLine.from_json(proxy, {"ts": 0, "level": level, "logger": "vmesh.proxy",
                                     "msg": msg})


def test_filter_combines_level_service_and_search() -> None:
    buffer = LogBuffer(capacity=3)
    for entry in [line("api", "debug", "noise"), line("api", "info", "started"),
                  line("web", "error", "upstream reset"), line("api", "error", "Upstream gone")]:
        buffer.add(entry)
    assert len(buffer) == 3
    buffer.filter = LogFilter.parse("svc=api level=warning upstream")
    assert [x.msg for x in buffer.visible()] == ["Upstream gone"]
    buffer.filter = LogFilter("info")
    assert [x.msg for x in buffer.visible(limit=2)] == ["upstream reset", "Upstream gone"]


def test_level_key_cycles_and_bad_level_is_rejected() -> None:
    assert [next_level(x) for x in ("debug", "info", "warning", "error")] == [
        "info", "warning", "error", "debug"]
    with pytest.raises(ValueError, match="unknown level"):
        LogFilter.parse("level=loud")
