"""Helpers for Pilot tests: wait for what the user would see, read tables as text."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.pilot import Pilot
from textual.widgets import DataTable

DEADLINE_S = 15.0


async def until(pilot: Pilot, condition: Callable[[], object], what: str,
                deadline_s: float = DEADLINE_S) -> None:
    """Let the app run until `condition()` holds; fail naming `what` after the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")


def table_rows(table: DataTable) -> list[list[str]]:
    """Every row of a DataTable as plain strings, top to bottom."""
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def column(table: DataTable, label: str) -> list[str]:
    index = [c.label.plain for c in table.columns.values()].index(label)
    return [row[index] for row in table_rows(table)]
