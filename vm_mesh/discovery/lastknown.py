"""Last known good: keep each service's last confirmed endpoint set on disk and serve it
when the backend fails or has not answered yet after a restart.

Wraps any `Discovery` backend. Every fresh set from the backend is saved
(`<state dir>/discovery/<service>.json`, written atomically). When the backend
reports its set stale, or raises, or says nothing within the startup grace
period, the wrapper serves the saved set marked `stale`, with the source
`last-known-good` and the time the backend last confirmed it, so its age is
visible wherever the set is shown. Stale discovery is never silent: each switch
to and from the saved set is logged. A name the backend refuses for good
(NotDiscoverable: an unknown datacenter) is refused here too, at once, saved
set or not: it is no failure to ride out.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from vm_mesh.discovery.base import Discovery, EndpointSet, Instance, NotDiscoverable
from vm_mesh.files import write_file

log = logging.getLogger("vmesh.discovery.lastknown")

SOURCE = "last-known-good"
FORMAT_VERSION = 1


def encode(endpoints: EndpointSet) -> bytes:
    """The on-disk form of a confirmed set (JSON, one version field for future changes)."""
    document = {
        "version": FORMAT_VERSION,
        "service": endpoints.service,
        "source": endpoints.source,
        "updated_at": endpoints.updated_at,
        "instances": [asdict(i) for i in endpoints.instances],
        "gateways_of": endpoints.gateways_of,
    }
    return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"


def decode(data: bytes) -> EndpointSet:
    """A saved set, marked stale and sourced `last-known-good`; ValueError when unreadable."""
    try:
        document: Any = json.loads(data)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        if document.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown format version {document.get('version')!r}")
        instances = tuple(Instance(**entry) for entry in document["instances"])
        return EndpointSet(
            service=str(document["service"]),
            instances=instances,
            source=SOURCE,
            updated_at=float(document["updated_at"]),
            stale=True,
            gateways_of=str(document.get("gateways_of", "")),  # absent: saved by an older vmesh
        )
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a saved endpoint set: {exc}") from None


def age_seconds(endpoints: EndpointSet, now: float | None = None) -> float:
    """How long ago the backend last confirmed the set (0 for a set never confirmed)."""
    if endpoints.updated_at <= 0:
        return 0.0
    return max((time.time() if now is None else now) - endpoints.updated_at, 0.0)


def choose(fresh: EndpointSet, saved: EndpointSet | None) -> EndpointSet:
    """What to serve for a set from the backend, given the saved one.

    A fresh (not stale) set always wins. A stale set from the backend that
    still lists instances is served as last known good with the backend's own
    age (it knows when it last confirmed it); an empty stale set (the backend
    never answered) gives way to the saved one, which then carries the backend's error.
    """
    if not fresh.stale:
        return fresh
    if fresh.instances:
        return replace(fresh, source=SOURCE)
    return fresh if saved is None else replace(saved, error=fresh.error)


class LastKnownGood:
    """A `Discovery` wrapper that saves confirmed sets and serves them when the backend fails."""

    def __init__(
        self,
        backend: Discovery,
        directory: Path,
        startup_grace_s: float = 2.0,
        retry_s: float = 1.0,
    ) -> None:
        self.backend = backend
        self.directory = directory
        self.startup_grace_s = startup_grace_s
        self.retry_s = retry_s

    def path(self, service: str) -> Path:
        return self.directory / f"{service}.json"

    def load(self, service: str) -> EndpointSet | None:
        """The saved set of `service`, or None when there is none (or it is unreadable)."""
        try:
            return decode(self.path(service).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable last-known-good file",
                        extra={"file": str(self.path(service)), "error": str(exc)})
            return None

    def save(self, endpoints: EndpointSet) -> None:
        try:
            write_file(self.path(endpoints.service), encode(endpoints))
        except OSError as exc:
            log.warning("could not save last-known-good endpoints",
                        extra={"file": str(self.path(endpoints.service)), "error": str(exc)})

    async def register(self, instance: Instance) -> None:
        await self.backend.register(instance)

    async def deregister(self, instance: Instance) -> None:
        await self.backend.deregister(instance)

    def waiting_for(self, instance: Instance) -> str | None:
        return self.backend.waiting_for(instance)

    async def close(self, withdraw: bool = True) -> None:
        await self.backend.close(withdraw)

    async def _pump(
        self, service: str, queue: "asyncio.Queue[EndpointSet | NotDiscoverable | None]"
    ) -> None:
        """Feed the backend's sets into `queue`; None after each failure, then start again;
        the backend's refusal of the name (NotDiscoverable) last."""
        while True:
            try:
                async for endpoints in self.backend.watch(service):
                    await queue.put(endpoints)
                log.warning("discovery watch ended; restarting", extra={"dst_service": service})
            except asyncio.CancelledError:
                raise
            except NotDiscoverable as refused:
                await queue.put(refused)
                return
            except Exception as exc:
                log.warning("discovery backend failed; serving last known good",
                            extra={"dst_service": service, "error": str(exc)})
            await queue.put(None)
            await asyncio.sleep(self.retry_s)

    async def watch(self, service: str) -> AsyncIterator[EndpointSet]:
        saved = self.load(service)
        queue: asyncio.Queue[EndpointSet | NotDiscoverable | None] = asyncio.Queue()
        pump = asyncio.create_task(self._pump(service, queue))
        last: EndpointSet | None = None
        try:
            first: EndpointSet | NotDiscoverable | None = None
            with contextlib.suppress(TimeoutError):
                first = await asyncio.wait_for(queue.get(), self.startup_grace_s)
            if first is None and saved is not None:
                log.warning("discovery has not answered; serving last known good",
                            extra={"dst_service": service, "age_s": round(age_seconds(saved))})
                last = saved
                yield saved
            pending = first
            while True:
                item = pending if pending is not None else await queue.get()
                pending = None
                if isinstance(item, NotDiscoverable):
                    raise item
                if item is None:  # the backend failed: keep what we have, marked stale
                    if last is not None and not last.stale:
                        last = replace(last, source=SOURCE, stale=True)
                        yield last
                    elif last is None and saved is not None:
                        last = saved
                        yield saved
                    continue
                served = choose(item, saved)
                if not item.stale:
                    self.save(item)
                    saved = replace(item, source=SOURCE, stale=True)
                if served != last:
                    if last is not None and last.stale and not served.stale:
                        log.info("discovery answers again", extra={"dst_service": service})
                    last = served
                    yield served
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
