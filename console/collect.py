"""One poll of one admin source: health, stats, certificates and endpoints together.

Used by the CLI views, `vmesh check` and the console's per-source workers.
Each poll has an overall deadline; a source that fails or is slow yields a
`Poll` with the reason, never an exception, so it cannot hold up the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from console.api import ProxyCerts, ProxyStats, UpstreamEndpoints, parse_endpoints
from console.client import AdminClient, AdminError, OperatorCredentials
from console.sources import Source

POLL_DEADLINE_S = 4.0
STATS_WINDOW = "60s"


@dataclass(slots=True)
class Poll:
    """What one source said (or why it said nothing)."""

    source: Source
    ok: bool
    reason: str | None = None
    detail: str | None = None
    ready: bool | None = None
    stats: ProxyStats | None = None
    certs: ProxyCerts | None = None
    endpoints: list[UpstreamEndpoints] = field(default_factory=list)
    server_date: datetime | None = None
    server_date_seen: datetime | None = None  # this host's time when the Date header came
    at: float = field(default_factory=time.time)


async def poll_source(source: Source, credentials: OperatorCredentials | None = None,
                      *, what: Sequence[str] = ("stats", "certs", "endpoints"),
                      deadline_s: float = POLL_DEADLINE_S,
                      client: AdminClient | None = None) -> Poll:
    """Ask one source for `what`; the answer arrives within `deadline_s` whatever happens.

    A long-lived caller passes its own `client` (kept open, connections reused);
    otherwise a client is made for this one poll.
    """
    try:
        if client is not None:
            return await asyncio.wait_for(_ask(client, source, what), deadline_s)
        return await asyncio.wait_for(_poll(source, credentials, what), deadline_s)
    except TimeoutError:
        return Poll(source, False, "admin.timeout",
                    f"{source.address} did not answer within {deadline_s:g}s")
    except AdminError as exc:
        return Poll(source, False, exc.reason, exc.detail)


async def _poll(source: Source, credentials: OperatorCredentials | None,
                what: Sequence[str]) -> Poll:
    async with AdminClient(source, credentials) as client:
        return await _ask(client, source, what)


async def _ask(client: AdminClient, source: Source, what: Sequence[str]) -> Poll:
    result = Poll(source, True, ready=await client.get_status("/ready") == 200)
    try:
        if "stats" in what:
            result.stats = ProxyStats.from_json(
                await client.get_json("/v1/stats", {"window": STATS_WINDOW}))
        if "certs" in what:
            result.certs = ProxyCerts.from_json(source.name, await client.get_json("/v1/certs"))
        if "endpoints" in what:
            result.endpoints = parse_endpoints(await client.get_json("/v1/endpoints"))
    except (ValueError, TypeError, AttributeError) as exc:
        raise AdminError(source.name, "admin.bad_response",
                         f"unexpected answer: {type(exc).__name__}: {exc}") from exc
    result.server_date = client.last_server_date
    result.server_date_seen = client.last_server_date_seen
    return result


async def poll_all(sources: Sequence[Source], credentials: OperatorCredentials | None = None,
                   *, what: Sequence[str] = ("stats", "certs", "endpoints")) -> list[Poll]:
    """Every source at once; the slowest bounds the time, a failure bounds nothing."""
    return list(await asyncio.gather(*(poll_source(s, credentials, what=what) for s in sources)))
