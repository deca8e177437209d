"""Where a followed log stream (`/v1/logs?follow=1`) resumes after it was opened again.

The proxy sends the lines logged at `since` or later (inclusive: a line's `ts` has
millisecond resolution, and several lines may share one); the cursor asks from the `ts` of
the last line delivered and drops the lines of that millisecond that were delivered before.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any


class LogCursor:
    """The position of one source's followed log stream."""

    def __init__(self) -> None:
        self._ts: float | None = None  # of the newest line delivered
        self._at_ts: Counter[str] = Counter()  # the lines delivered with that ts
        self._resent: Counter[str] = Counter()  # of those, the ones the stream may send again

    def params(self, params: dict[str, str]) -> dict[str, str]:
        """The query of the next request of the stream: `params`, from the last line on."""
        self._resent = Counter(self._at_ts)
        return params if self._ts is None else {**params, "since": repr(self._ts)}

    def fresh(self, line: dict[str, Any]) -> bool:
        """Whether `line` is new (not one delivered before the stream was opened again)."""
        ts = line.get("ts")
        if not isinstance(ts, int | float):
            return True
        key = json.dumps(line, sort_keys=True, default=str)
        if ts == self._ts and self._resent[key] > 0:
            self._resent[key] -= 1
            return False
        if self._ts is None or ts > self._ts:
            self._ts, self._at_ts, self._resent = ts, Counter(), Counter()
        if ts == self._ts:
            self._at_ts[key] += 1
        return True
