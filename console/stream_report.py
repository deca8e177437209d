"""What the CLI twins (`vmesh tap`, `top`, `logs`) say about the sources of a merged stream.

Each failure of a source is printed once on stderr (again only after its stream was open in
between), gaps are counted out loud, and the exit code says whether any source answered.
"""

from __future__ import annotations

import sys

from console.streams import StreamEvent, StreamFailure, StreamGap, StreamItem, StreamOpen


class StreamReport:
    """Follows the non-item events of a stream from `sources` sources; `what` names its items
    in gap messages ("requests", "log lines")."""

    def __init__(self, sources: int, what: str) -> None:
        self._sources = sources
        self._what = what
        self._failing: set[str] = set()
        self._given_up: set[str] = set()
        self.answered = False  # some source opened its stream

    def item(self, event: StreamEvent) -> StreamItem | None:
        """`event` when it is an item; otherwise it is reported here and None returned."""
        if isinstance(event, StreamItem):
            return event
        if isinstance(event, StreamOpen):
            self.answered = True
            self._failing.discard(event.source)
        elif isinstance(event, StreamGap):
            print(f"vmesh: {event.source} dropped {event.dropped} {self._what}", file=sys.stderr)
        else:
            self._failed(event)
        return None

    def _failed(self, failure: StreamFailure) -> None:
        if failure.source not in self._failing:
            print(f"vmesh: {failure.source}: {failure.detail} [{failure.reason}]",
                  file=sys.stderr)
            self._failing.add(failure.source)
        if failure.final:
            self._given_up.add(failure.source)

    @property
    def all_given_up(self) -> bool:
        """Every source failed in a way retrying cannot help."""
        return len(self._given_up) == self._sources

    @property
    def exit_code(self) -> int:
        """1 when no source answered, else 0."""
        return 0 if self.answered else 1
