"""`top`: live routes aggregated from tap events, like `linkerd viz top`.

Rows merge on the key columns (source, destination, method, path); each row
keeps count, best/worst/last latency, success rate and a sliding-window rate
(over the time watched, while that is shorter than the window, so the rate is
right from the first seconds). The number of rows is bounded: the least
recently seen row goes first.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

from console.api import TapEvent
from console.models.dedup import SeenOnce
from vm_mesh.rates import rate_span, window_start

RATE_WINDOW_S = 10.0
MAX_ROWS = 500
SORT_KEYS = ("rps", "count", "latency", "success")


@dataclass(slots=True)
class TopRow:
    """One (source, destination, method, path) aggregate."""

    source: str
    destination: str
    method: str
    path: str
    count: int = 0
    successes: int = 0
    best_ms: float = float("inf")
    worst_ms: float = 0.0
    last_ms: float = 0.0
    last_ts: float = 0.0
    watched_since: float = -math.inf  # when the table began to see tap events (epoch seconds)
    # Requests per whole second of their start (tap's `ts`), the last RATE_WINDOW_S seconds
    # of them: events arrive as requests end, so seconds come out of order.
    _per_second: dict[int, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.source, self.destination, self.method, self.path)

    @property
    def success_rate(self) -> float:
        return self.successes / self.count if self.count else 0.0

    def rps(self, now: float, window_s: float = RATE_WINDOW_S) -> float:
        """Requests per second over the last `window_s` seconds before `now` (the whole
        seconds from `now - window_s` on), or since watching began if that is later."""
        first = window_start(now, window_s)
        recent = sum(count for second, count in self._per_second.items() if second >= first)
        return recent / rate_span(now, window_s, self.watched_since)

    def add(self, event: TapEvent) -> None:
        self.count += 1
        self.successes += event.ok
        self.best_ms = min(self.best_ms, event.latency_ms)
        self.worst_ms = max(self.worst_ms, event.latency_ms)
        self.last_ms = event.latency_ms
        self.last_ts = max(self.last_ts, event.ts)
        second = int(event.ts)
        counts = self._per_second
        counts[second] = counts.get(second, 0) + 1
        if len(counts) > RATE_WINDOW_S + 2:  # constant memory: older seconds leave
            newest = max(counts)
            for old in [s for s in counts if s < newest - RATE_WINDOW_S]:
                del counts[old]


class TopTable:
    """The aggregate of every tap event fed in, ranked on demand."""

    def __init__(self, watched_since: float, max_rows: int = MAX_ROWS) -> None:
        """`watched_since`: when tap events began to arrive (epoch seconds), the start of
        every row's rate while the table is younger than the rate's window."""
        self.watched_since = watched_since
        self._rows: OrderedDict[tuple[str, str, str, str], TopRow] = OrderedDict()
        self._dedup = SeenOnce()
        self.max_rows = max_rows

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, event: TapEvent) -> None:
        if not self._dedup.counts(event):
            return
        key = (event.client_name, event.destination_name, event.method or "-",
               _path_only(event.path))
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = TopRow(*key, watched_since=self.watched_since)
            if len(self._rows) > self.max_rows:
                self._rows.popitem(last=False)
        else:
            self._rows.move_to_end(key)
        row.add(event)

    def ranked(self, by: str, now: float) -> list[TopRow]:
        """Rows best first: by `rps`, `count`, `latency` (worst) or `success` (lowest first)."""
        if by not in SORT_KEYS:
            raise ValueError(f"unknown sort {by!r}: use one of {', '.join(SORT_KEYS)}")
        rows = list(self._rows.values())
        if by == "rps":
            return sorted(rows, key=lambda r: (-r.rps(now), -r.count, r.key))
        if by == "count":
            return sorted(rows, key=lambda r: (-r.count, r.key))
        if by == "latency":
            return sorted(rows, key=lambda r: (-r.worst_ms, r.key))
        return sorted(rows, key=lambda r: (r.success_rate, -r.count, r.key))


def _path_only(path: str | None) -> str:
    """The path without its query string (queries would make every row unique)."""
    return (path or "-").split("?", 1)[0]
