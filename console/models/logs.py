"""`logs`: the proxies' log lines, bounded, with level, service and search filters."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from console.api import LEVELS, LogLine

DEFAULT_CAPACITY = 10_000


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Lines at `min_level` or above, from `service` (a proxy) if set, containing `search`."""

    min_level: str = "debug"
    service: str | None = None
    search: str | None = None

    @classmethod
    def parse(cls, expression: str, min_level: str = "debug") -> LogFilter:
        """`svc=NAME level=warning some words`: the words are the search text."""
        service, words = None, []
        for term in expression.split():
            key, sep, value = term.partition("=")
            if sep and key in ("svc", "service"):
                service = value or None
            elif sep and key == "level":
                if value not in LEVELS:
                    raise ValueError(f"unknown level {value!r}: use {', '.join(LEVELS)}")
                min_level = value
            else:
                words.append(term)
        return cls(min_level, service, " ".join(words) or None)

    def __str__(self) -> str:
        parts = [f"level>={self.min_level}"]
        if self.service:
            parts.append(f"svc={self.service}")
        if self.search:
            parts.append(repr(self.search))
        return " ".join(parts)

    def matches(self, line: LogLine) -> bool:
        if _rank(line.level) < _rank(self.min_level):
            return False
        if self.service and line.proxy != self.service:
            return False
        if self.search:
            needle = self.search.lower()
            if needle not in line.render().lower() and needle not in line.logger.lower():
                return False
        return True


def _rank(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else 1


def next_level(level: str) -> str:
    """The level the `l` key switches to: debug -> info -> warning -> error -> debug."""
    cycle = LEVELS[:4]
    return cycle[(cycle.index(level) + 1) % len(cycle)] if level in cycle else "debug"


class LogBuffer:
    """The newest `capacity` lines of every proxy, oldest first."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self.filter = LogFilter()

    def __len__(self) -> int:
        return len(self._lines)

    def add(self, line: LogLine) -> None:
        self._lines.append(line)

    def visible(self, limit: int | None = None) -> list[LogLine]:
        """Matching lines, oldest first; only the newest `limit` when given."""
        shown = [line for line in self._lines if self.filter.matches(line)]
        return shown[-limit:] if limit else shown
