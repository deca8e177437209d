"""Everything the console knows, in one object the views read and the workers feed.

No Textual here: workers call `apply_poll`, `add_tap` and `add_log`; views
read the models. A test can fill it directly and render the views from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from console.api import LogLine, ProxyCerts, TapEvent, UpstreamEndpoints
from console.collect import Poll
from console.models.checks import Finding
from console.models.edges import EdgeTable
from console.models.logs import LogBuffer
from console.models.overview import SourceStatus
from console.models.tap import TapBuffer
from console.models.top import TopTable
from console.sources import Source


class MeshData:
    """Sources and their latest answers, plus the bounded tap and log buffers."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 tap_capacity: int = 5_000, log_capacity: int = 10_000) -> None:
        self.clock = clock
        self.statuses: dict[str, SourceStatus] = {}
        self.polls: dict[str, Poll] = {}
        self.certs: dict[str, ProxyCerts] = {}
        self.endpoints: dict[str, list[UpstreamEndpoints]] = {}  # per source: its upstreams
        self.tap = TapBuffer(tap_capacity)
        self.top = TopTable(watched_since=clock())
        self.edges = EdgeTable()
        self.logs = LogBuffer(log_capacity)
        self.findings: list[Finding] = []
        self.stream_errors: dict[str, str] = {}
        self.discovery_errors: dict[str, str] = {}  # provider label -> why it listed nothing
        self.dropped_at_source = 0  # tap and log items the proxies could not send in time

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def add_source(self, source: Source) -> SourceStatus:
        status = self.statuses.get(source.name)
        if status is None:
            status = self.statuses[source.name] = SourceStatus(source.name, source.address)
        return status

    def remove_source(self, name: str) -> None:
        """Forget a source the console no longer follows (found again under another name)."""
        for table in (self.statuses, self.polls, self.certs, self.endpoints):
            table.pop(name, None)
        for key in [k for k in self.stream_errors if k.startswith(f"{name}/")]:
            del self.stream_errors[key]

    def apply_poll(self, poll: Poll) -> None:
        """Record one poll: success refreshes the data, failure keeps it but marks why."""
        status = self.add_source(poll.source)
        self.polls[poll.source.name] = poll
        if poll.ok:
            status.succeeded(poll.at)
            status.ready = poll.ready
            status.stats = poll.stats or status.stats
            if poll.certs is not None:
                self.certs[poll.source.name] = poll.certs
            self.endpoints[poll.source.name] = poll.endpoints
        else:
            status.failed(poll.reason or "admin.error", poll.detail or "")

    def add_tap(self, event: TapEvent) -> None:
        self.tap.add(event)
        self.top.add(event)
        self.edges.add(event)

    def add_log(self, line: LogLine) -> None:
        self.logs.add(line)

    def unreachable(self) -> list[SourceStatus]:
        return [s for s in self.statuses.values() if s.state == "unreachable"]
