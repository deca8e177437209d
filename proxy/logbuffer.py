"""The proxy's own log lines, kept in a ring buffer for `/v1/logs` and followed live."""

import logging
from collections import deque
from typing import Any

from proxy.feed import BoundedFeed
from vm_mesh.logs import record_fields

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def level_number(name: str) -> int:
    """The numeric level of `debug` .. `critical`; ValueError for anything else."""
    try:
        return LEVELS[name.lower()]
    except KeyError:
        raise ValueError(f"level {name!r}: expected one of {', '.join(LEVELS)}") from None


class LogBuffer(logging.Handler):
    """A logging handler that remembers the last `capacity` records as structured dicts."""

    def __init__(self, capacity: int = 2000) -> None:
        super().__init__()
        self._lines: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._followers: list[tuple[int, BoundedFeed[dict[str, Any]]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = record_fields(record)
        except Exception:  # a log call must never break the caller
            self.handleError(record)
            return
        self._lines.append(fields)
        for minimum, feed in tuple(self._followers):
            if record.levelno >= minimum:
                feed.offer(fields)

    @property
    def followers(self) -> int:
        """The live feeds open (`follow` without its `unfollow` yet)."""
        return len(self._followers)

    def recent(self, level: str = "debug", limit: int = 500) -> list[dict[str, Any]]:
        minimum = level_number(level)
        lines = [line for line in self._lines if LEVELS.get(line["level"], 0) >= minimum]
        return lines[-limit:]

    def follow(self, level: str = "debug", capacity: int = 1000) -> BoundedFeed[dict[str, Any]]:
        """A live feed of new lines at or above `level`; call `unfollow` when done."""
        feed: BoundedFeed[dict[str, Any]] = BoundedFeed(capacity)
        self._followers.append((level_number(level), feed))
        return feed

    def unfollow(self, feed: BoundedFeed[dict[str, Any]]) -> None:
        self._followers = [(m, f) for m, f in self._followers if f is not feed]
