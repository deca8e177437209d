"""`endpoints` view and `vmesh endpoints`: what each proxy balances its upstreams over.

From each proxy's `/v1/endpoints`: every upstream with its datacenter (`api.east` is
`api` of datacenter `east`; `local` is the proxy's own site), what state it is in (a
failover, a refusal, instances ejected), and under it each instance with its breaker and
the mesh gateway it is reached through, if any. A row is a plain record: the console
styles it, the CLI prints it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from console import format as fmt
from console.api import Endpoint, Failover, UpstreamEndpoints

LOCAL = "local"  # the datacenter column of a service of the proxy's own site
BREAKER_HEALTH = {"closed": "ok", "half-open": "degraded", "open": "down"}


@dataclass(frozen=True, slots=True)
class EndpointRow:
    """One upstream of one proxy (`instance` None) or one instance of it."""

    key: str
    proxy: str
    upstream: str
    datacenter: str
    instance: str | None
    address: str
    state: str
    health: str  # ok | degraded | down: how the console colours `state`
    detail: str


def datacenter_of(upstream: UpstreamEndpoints) -> str:
    return upstream.datacenter or LOCAL


def since(failover: Failover) -> str:
    """`17:42:03` (UTC, as the tap view's times), when the failover began; `-` when the
    proxy does not say."""
    return f"{failover.since:%H:%M:%S}" if failover.since else "-"


def failed_query(up: UpstreamEndpoints) -> str:
    """`; its last query failed: <why>` when discovery's last query for `up` failed, else ""."""
    return f"; its last query failed: {up.error}" if up.error else ""


def upstream_state(up: UpstreamEndpoints) -> tuple[str, str, str]:
    """(state, health, detail) of one upstream: a refusal or a failover first, then what
    its instances are."""
    if up.refused is not None:
        return "refused", "down", up.refused[0]
    if up.failover is not None:
        where = f"to {up.failover.to}" if up.failover.to else "no destination available"
        health = "degraded" if up.failover.to else "down"
        return "failover", health, f"{where} since {since(up.failover)} ({up.failover.reason})"
    listed = len(up.members) or up.instances
    failed = failed_query(up)
    if not listed:
        return "none", "down", f"discovery lists no instance (source {up.source}{failed})"
    ejected = sum(1 for m in up.members if m.breaker == "open")
    if ejected == listed:
        return "ejected", "down", f"all {listed} ejected by their breakers"
    if ejected:
        return "degraded", "degraded", f"{ejected} of {listed} ejected"
    if up.stale:
        return "stale", "degraded", f"{listed} from {up.source}, stale{failed}"
    return "ok", "ok", f"{listed} from {up.source}"


def _instance_row(proxy: str, up: UpstreamEndpoints, member: Endpoint) -> EndpointRow:
    return EndpointRow(
        key=f"{proxy}|{up.service}|{member.id}", proxy=proxy, upstream=up.service,
        datacenter=datacenter_of(up), instance=member.id, address=member.addr,
        state=member.breaker, health=BREAKER_HEALTH.get(member.breaker, "degraded"),
        detail=f"gateway {member.gateway}" if member.gateway else "")


def endpoint_rows(endpoints: Mapping[str, Sequence[UpstreamEndpoints]]) -> list[EndpointRow]:
    """Per proxy (by name) and upstream (by name), the upstream's row and its instances'."""
    rows = []
    for proxy in sorted(endpoints):
        for up in sorted(endpoints[proxy], key=lambda u: u.service):
            state, health, detail = upstream_state(up)
            rows.append(EndpointRow(
                key=f"{proxy}|{up.service}", proxy=proxy, upstream=up.service,
                datacenter=datacenter_of(up), instance=None, address=up.source, state=state,
                health=health, detail=detail))
            rows += [_instance_row(proxy, up, member) for member in up.members]
    return rows


def failover_lines(endpoints: Mapping[str, Sequence[UpstreamEndpoints]],
                   now: float) -> list[str]:
    """One line per upstream failed over, all of it: `web: api -> api.east since 17:42:03
    (4m ago): no_endpoints: discovery lists no instance of api`."""
    lines = []
    for proxy in sorted(endpoints):
        for up in sorted(endpoints[proxy], key=lambda u: u.service):
            failover = up.failover
            if failover is None:
                continue
            ago = fmt.ago(now - failover.since.timestamp()) if failover.since else "-"
            lines.append(f"{proxy}: {up.service} -> {failover.to or 'nowhere'} since "
                         f"{since(failover)} ({ago}): {failover.reason}: {failover.detail}")
    return lines


def endpoint_json(proxy: str, up: UpstreamEndpoints) -> dict[str, Any]:
    """One upstream of one proxy for `vmesh endpoints --json`."""
    state, _, _ = upstream_state(up)
    failover = up.failover
    return {
        "proxy": proxy, "upstream": up.service, "datacenter": datacenter_of(up),
        "state": state, "source": up.source, "stale": up.stale, "error": up.error or None,
        "refused": {"reason": up.refused[0], "detail": up.refused[1]} if up.refused else None,
        "failover": {"to": failover.to, "reason": failover.reason, "detail": failover.detail,
                     "since": failover.since.astimezone(UTC).isoformat()
                     if failover.since else None} if failover else None,
        "instances": [{"id": m.id, "addr": m.addr, "datacenter": datacenter_of(up),
                       "breaker": m.breaker, "gateway": m.gateway} for m in up.members],
    }
