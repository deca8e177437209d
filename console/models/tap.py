"""The tap view model: a bounded ring buffer of tap events and the `/` filter over it."""

from __future__ import annotations

import shlex
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from console.api import TapEvent

DEFAULT_CAPACITY = 5_000


@dataclass(frozen=True, slots=True)
class TapFilter:
    """What the operator typed after `/`: all given terms must match.

    Syntax: space-separated `key=value` terms, keys `svc` (service: matches the
    proxy, the destination service or the source identity), `path` (prefix),
    `method`, `status` (`500`, `5xx`, `>=400`), `lat` (minimum latency in ms,
    `lat>=250` or `lat=250`). A bare word matches path, service or authority.
    """

    service: str | None = None
    path: str | None = None
    method: str | None = None
    status: str | None = None
    min_latency_ms: float | None = None
    text: str | None = None

    @classmethod
    def parse(cls, expression: str) -> TapFilter:
        """Parse a filter expression; ValueError names the bad term."""
        fields: dict[str, object] = {}
        for term in shlex.split(expression):
            for op in (">=", "="):
                key, sep, value = term.partition(op)
                if sep:
                    break
            else:
                fields["text"] = term
                continue
            key = key.strip().lower()
            if key in ("svc", "service"):
                fields["service"] = value
            elif key == "path":
                fields["path"] = value
            elif key == "method":
                fields["method"] = value.upper()
            elif key == "status":
                _status_matcher(op + value if op == ">=" else value)  # validate now
                fields["status"] = op + value if op == ">=" else value
            elif key in ("lat", "latency"):
                try:
                    fields["min_latency_ms"] = float(value.removesuffix("ms"))
                except ValueError:
                    raise ValueError(f"bad latency {value!r}: use milliseconds, like lat>=250"
                                     ) from None
            else:
                raise ValueError(f"unknown filter key {key!r}: use svc, path, method, status, lat")
        return cls(**fields)  # type: ignore[arg-type]

    def __str__(self) -> str:
        parts = []
        if self.service:
            parts.append(f"svc={self.service}")
        if self.path:
            parts.append(f"path={self.path}")
        if self.method:
            parts.append(f"method={self.method}")
        if self.status:
            parts.append(f"status{self.status}" if self.status.startswith(">=")
                         else f"status={self.status}")
        if self.min_latency_ms is not None:
            parts.append(f"lat>={self.min_latency_ms:g}")
        if self.text:
            parts.append(self.text)
        return " ".join(parts)

    def matches(self, event: TapEvent) -> bool:
        if self.service and self.service not in (
            event.proxy, event.dst_service, event.source_name
        ):
            return False
        if self.path and not (event.path or "").startswith(self.path):
            return False
        if self.method and (event.method or "").upper() != self.method:
            return False
        if self.status and not _status_matcher(self.status)(event.status):
            return False
        if self.min_latency_ms is not None and event.latency_ms < self.min_latency_ms:
            return False
        if self.text:
            haystack = " ".join(
                x or "" for x in (event.path, event.dst_service, event.authority, event.proxy)
            )
            if self.text.lower() not in haystack.lower():
                return False
        return True

    def server_params(self) -> dict[str, str]:
        """The part the admin API filters server-side (`/v1/tap?...`), to save bandwidth."""
        params: dict[str, str] = {}
        if self.path:
            params["path"] = self.path
        if self.method:
            params["method"] = self.method
        if self.status and not self.status.startswith(">="):
            params["status"] = self.status  # `503` or `5xx`; bounds are filtered here only
        if self.min_latency_ms is not None:
            params["min_latency_ms"] = f"{self.min_latency_ms:g}"
        return params


def _status_matcher(spec: str):
    """A predicate for a status spec: `404`, `5xx`, `>=400`."""
    spec = spec.strip().lower()
    if spec.startswith(">="):
        bound = _int(spec[2:], spec)
        return lambda status: status is not None and status >= bound
    if len(spec) == 3 and spec.endswith("xx") and spec[0].isdigit():
        klass = int(spec[0])
        return lambda status: status is not None and status // 100 == klass
    exact = _int(spec, spec)
    return lambda status: status == exact


def _int(text: str, spec: str) -> int:
    if not text.isdigit():
        raise ValueError(f"bad status {spec!r}: use 404, 5xx or >=400")
    return int(text)


class TapBuffer:
    """The last `capacity` tap events (older ones fall off), plus what the view shows.

    Appending is O(1) and the memory is bounded however long the session runs.
    While paused, events keep arriving into the buffer but `visible()` reads a
    copy taken when the operator paused, however many events came since.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._events: deque[TapEvent] = deque(maxlen=capacity)
        self.capacity = capacity
        self.filter = TapFilter()
        self.received = 0
        self._frozen: list[TapEvent] | None = None  # the events when paused

    def __len__(self) -> int:
        return len(self._events)

    def add(self, event: TapEvent) -> None:
        self._events.append(event)
        self.received += 1

    def extend(self, events: Iterable[TapEvent]) -> None:
        for event in events:
            self.add(event)

    @property
    def paused(self) -> bool:
        return self._frozen is not None

    def pause(self) -> None:
        self._frozen = list(self._events)

    def resume(self) -> None:
        self._frozen = None

    @property
    def dropped(self) -> int:
        """Events that fell off the ring since the session began."""
        return self.received - len(self._events)

    def visible(self, limit: int) -> list[TapEvent]:
        """The newest `limit` events that pass the filter, newest first."""
        events = self._frozen if self._frozen is not None else self._events
        shown: list[TapEvent] = []
        for event in reversed(events):
            if self.filter.matches(event):
                shown.append(event)
                if len(shown) >= limit:
                    break
        return shown
