"""What the proxy knows of each upstream service: instances, their latency and breakers."""

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

from proxy.balance import PeakEwma, pick
from proxy.breaker import BreakerSettings, CircuitBreaker
from proxy.failover import Failover
from vm_mesh.discovery import sites
from vm_mesh.discovery.base import EndpointSet, Instance, NotDiscoverable

log = logging.getLogger("vmesh.proxy")

UNUSED_SWEEPS = 10  # sweeps in a row without a request, after which a watch is dropped
REFUSAL_S = 30.0  # how long discovery's refusal of a name answers its requests, unasked


class NoEndpoints(Exception):
    """No instance of the service can take the request now."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(slots=True)
class Endpoint:
    """One instance as the balancer sees it."""

    instance: Instance
    breaker: CircuitBreaker
    # its connections' key in the pool: `service@host:port`, the service its certificate names
    # (`api` for `api.east`, an instance of `api` in datacenter east), then `/<server name>`
    # for another site's gateway, so connections to services behind one gateway never mix
    pool_key: str
    ewma: PeakEwma = field(default_factory=PeakEwma)
    last_seen: float = field(default_factory=time.time)
    authority: str = field(init=False)  # the instance's, made once, not per request
    weight: int = field(init=False)  # the balancer reads it per request

    def __post_init__(self) -> None:
        self.authority = self.instance.authority
        self.weight = self.instance.weight

    def available(self) -> bool:
        return self.breaker.available()

    def __repr__(self) -> str:
        return (
            f"<Endpoint {self.instance.instance_id} {self.instance.authority} "
            f"{self.breaker.state} ewma={self.ewma.value:.1f}ms pending={self.ewma.pending}>"
        )


class ServiceEndpoints:
    """The endpoints of one upstream service, kept in step with discovery."""

    def __init__(self, service: str, breaker: BreakerSettings, rng: random.Random) -> None:
        self.service = service
        # the service its instances' certificates name: `api` for `api.east`
        self.peer_service = sites.split(service)[0]
        self._breaker = breaker
        self._rng = rng
        self.endpoints: dict[str, Endpoint] = {}
        self.view: EndpointSet | None = None
        self.used = True  # a request asked for the service since the last sweep
        self._unused_sweeps = 0
        self.refused: NotDiscoverable | None = None  # discovery cannot serve the name at all
        self._refused_at = 0.0
        # where its requests go while it has no available instance (ServicePolicy `failover`)
        self.failover: Failover | None = None

    def refuse(self, refusal: NotDiscoverable, now: float) -> None:
        """Discovery refuses the name (a datacenter it does not know) at `now` (monotonic):
        requests get `refusal`, whatever set it served before (a saved one, while the agent
        did not answer)."""
        self.refused = refusal
        self._refused_at = now
        self.endpoints = {}
        self.view = None

    def refused_long_ago(self, now: float) -> bool:
        """Whether discovery refused the name more than REFUSAL_S before `now`: time to ask
        again (a datacenter may have joined the federation since)."""
        return self.refused is not None and now - self._refused_at > REFUSAL_S

    def unused_for_long(self) -> bool:
        """Called once per sweep: True once no request has asked for this service in
        `UNUSED_SWEEPS` sweeps in a row (its watch can go)."""
        if self.used:
            self.used = False
            self._unused_sweeps = 0
            return False
        self._unused_sweeps += 1
        return self._unused_sweeps >= UNUSED_SWEEPS

    def update(self, view: EndpointSet) -> tuple[set[str], set[str]]:
        """Install a new endpoint set; an instance still at the same address keeps its latency
        and breaker state, whatever else its announcement changed (a drain to weight 0, a new
        version), and one at a new address (another process) starts afresh. Returns the pool
        keys that came and those that went (`Endpoint.pool_key`)."""
        before = self.pool_keys()
        current: dict[str, Endpoint] = {}
        for instance in view.instances:
            if (twin := current.get(instance.instance_id)) is not None:
                log.warning(
                    "two instances announce one id; only the last gets traffic",
                    extra={"reason": "discovery.duplicate_instance_id", "dst_service": self.service,
                           "instance": instance.instance_id,
                           "addrs": [twin.authority, instance.authority],
                           "hint": "give each instance its own instance_id in its service file"},
                )
            known = self.endpoints.get(instance.instance_id)
            if known is not None and known.authority == instance.authority:
                known.instance = instance
                known.weight = instance.weight
                known.last_seen = time.time()
                current[instance.instance_id] = known
            else:
                key = f"{self.peer_service}@{instance.authority}"
                if instance.server_name:
                    key += f"/{instance.server_name}"
                current[instance.instance_id] = Endpoint(
                    instance, CircuitBreaker(self._breaker, rng=self._rng), key
                )
        self.endpoints = current
        self.view = view
        after = self.pool_keys()
        return after - before, before - after

    def pool_keys(self) -> set[str]:
        """The pool keys of its endpoints."""
        return {endpoint.pool_key for endpoint in self.endpoints.values()}

    def set_breaker(self, settings: BreakerSettings) -> None:
        """New breaker settings (a policy reload); every breaker keeps its current state."""
        self._breaker = settings
        for endpoint in self.endpoints.values():
            endpoint.breaker.settings = settings

    def pick(self, exclude: frozenset[str] | set[str] = frozenset()) -> Endpoint | None:
        """An endpoint by P2C, leaving out the instance ids in `exclude`."""
        if not exclude:
            return pick(list(self.endpoints.values()), self._rng)
        candidates = [e for i, e in self.endpoints.items() if i not in exclude]
        return pick(candidates, self._rng)

    def available(self) -> bool:
        """Whether an instance can take a request now (`pick` would find one)."""
        return any(endpoint.available() for endpoint in self.endpoints.values())

    def no_instance(self) -> NoEndpoints:
        """Why no instance can take a request: discovery refuses the name, lists none, or
        every instance listed is ejected by its circuit breaker."""
        if self.refused is not None:  # a datacenter discovery does not know
            return NoEndpoints(self.refused.reason, str(self.refused))
        if not self.endpoints:
            if self.view is not None and self.view.gateways_of:
                return NoEndpoints(
                    "no_endpoints",
                    f"discovery lists no mesh gateway of datacenter {self.view.gateways_of}, "
                    f"which carries {self.service} ([discovery] gateways of mesh.toml)",
                )
            if self.view is not None and self.view.error:
                return NoEndpoints("no_endpoints", f"discovery lists no instance of "
                                   f"{self.service}; its last query failed: {self.view.error}")
            return NoEndpoints("no_endpoints", f"discovery lists no instance of {self.service}")
        return NoEndpoints(
            "all_endpoints_ejected", f"every instance of {self.service} is failing (circuit open)"
        )

    def fail_over(self, to: str | None, why: NoEndpoints) -> None:
        """Its requests go to the failover destination `to` (None: no destination has an
        instance either), as it has none available (`why`); logged when that is a change."""
        current = self.failover
        if current is not None and current.to == to:
            return
        self.failover = Failover(to, why.reason, str(why), time.time())
        fields = {"event": "failover", "dst_service": self.service, "failover_to": to,
                  "reason": why.reason, "detail": str(why)}
        if to is None:
            log.warning("failover found no destination with an available instance either; "
                        "requests fail", extra=fields)
        else:
            log.warning("failing over: the service has no available instance", extra=fields)

    def fail_back_to(self, endpoint: Endpoint) -> None:
        """`endpoint`, one of its own instances, was picked while it fails over: its requests
        go to its own instances again, unless the pick is a mere probe of an ejected instance
        (its breaker half-open)."""
        if endpoint.breaker.state == "closed":
            self.fail_back()

    def fail_back(self) -> None:
        """Its requests go to its own instances again (one is available): logged."""
        self._end_failover("failover ends: the service has an available instance again",
                           "failover.instance_available")

    def follow_failover_policy(self, order: tuple[str, ...]) -> None:
        """A policy reload made `order` its failover destinations: a failover to one no
        longer listed (or with none listed) ends at once, logged, so that `/v1/endpoints`
        says what the next request does, not what the policy before said."""
        current = self.failover
        if current is None or (order and (current.to is None or current.to in order)):
            return
        self._end_failover("failover ends: the reloaded policy no longer fails over there",
                           "failover.removed_by_policy")

    def _end_failover(self, message: str, reason: str) -> None:
        current = self.failover
        if current is None:
            return
        self.failover = None
        log.info(message, extra={"event": "failover_ended", "dst_service": self.service,
                                 "failover_from": current.to, "reason": reason})

    def describe(self) -> dict[str, Any]:
        view = self.view
        return {
            "service": self.service,
            "source": view.source if view else None,
            "updated_at": view.updated_at if view else None,
            "age_s": round(time.time() - view.updated_at, 1) if view else None,
            "stale": view.stale if view else None,
            "error": (view.error or None) if view else None,
            "refused": (
                {"reason": self.refused.reason, "detail": str(self.refused)}
                if self.refused else None
            ),
            "failover": self.failover.describe() if self.failover else None,
            "instances": [
                {
                    "id": e.instance.instance_id,
                    "addr": e.instance.authority,
                    "zone": e.instance.zone,
                    "weight": e.instance.weight,
                    "version": e.instance.version,
                    "ewma_ms": round(e.ewma.value, 3),
                    "pending": e.ewma.pending,
                    "breaker": e.breaker.describe(),
                    "last_seen": e.last_seen,
                    # the instance is another site's gateway, carrying this name to the service
                    "gateway": {"server_name": e.instance.server_name}
                    if e.instance.server_name else None,
                }
                for e in self.endpoints.values()
            ],
        }
