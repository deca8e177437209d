"""Consul discovery: register with the local agent, watch with health blocking queries.

Registration puts the instance into the local agent with an HTTP check on the
proxy's `/ready` and `DeregisterCriticalServiceAfter`, so a proxy that stops
being ready leaves the healthy set within a check interval and a host that
dies leaves the catalog without anyone cleaning up. The check calls the admin
port over HTTPS, where `/ready` and `/live` answer without a client
certificate (proxy/admin.py). It sets `TLSSkipVerify`: our leaf certificates
carry only a SPIFFE URI SAN and no host name, so the agent could not match
any name against them, and an agent has no mesh trust bundle anyway. What is
lost is the agent's proof that it talks to our proxy, which a health probe on
the host's own loopback does not need; the mesh traffic itself stays mutually
authenticated. The check URL's host is where the local agent reaches the admin
listener (`check_host`: loopback unless the admin port listens on one address).
The agent may drop a registration: it reaps one whose check stayed critical
for `DeregisterCriticalServiceAfter` (a proxy not ready for a while, say
while its certificate could not be renewed), and one restarted without its
data directory has none. Every `resync_s` the backend compares the agent's
services (`/v1/agent/services`) with its own and registers again what is
missing, as Nomad's Consul sync does, so a proxy that is ready again comes
back instead of staying out of discovery until it restarts.

Watching uses
`/v1/health/service/<name>?passing&index=N&wait=...` and follows Consul's
rules for blocking queries: a response is no proof of change, an index that
goes backwards restarts from 0, an index below 1 is treated as 1, the loop is
rate-limited with a token bucket (two queries at once, then one per
`query_interval_s` while every answer brings a change), so a service that churns
is polled at a steady rate rather than in a busy loop, and failures back off
exponentially so a flapping agent is not hammered.

Several meshes (sites, or a staging and a production mesh) may share one
Consul cluster, under the same service names. Each instance registers its
trust domain in its service meta (`td`, as the mDNS TXT key), and a watch
keeps only the instances of its own: another mesh's instances would fail the
identity check (`upstream.wrong_identity`) or the handshake, and burn connect
attempts and breakers on the way. An entry with no `td` (registered by a
vmesh older than this key, or by hand) is kept, so that a mesh upgraded host
by host keeps routing to the proxies not yet upgraded; such an instance is
trusted by its certificate alone, as every instance is in the end, and the
watch logs it once (`discovery_consul_unscoped`). The meta is no security
boundary: whoever may register in Consul may write any `td`; it keeps meshes
from routing to each other by mistake, mutual TLS keeps them apart.

A name `api.east` (vm_mesh.discovery.sites) is the service `api` of datacenter
`east`, watched through the local agent with `?dc=east`, as Consul's own
cross-datacenter queries go over WAN federation. The watch first asks the
agent for the datacenters it knows (`/v1/catalog/datacenters`): a datacenter
it does not know, or one left out of `datacenters` (the allow-list of
mesh.toml's [discovery]), is refused with NotDiscoverable instead of a watch
that fails for ever. The list is needed because an older agent answers a query
to a datacenter it knows but cannot reach now with the same 500 "No path to
datacenter" as one to a datacenter that does not exist; a known one that stops
answering is an outage like the local agent's: retried with backoff, its last
set kept, marked stale.

A datacenter listed in `gateways` (mesh.toml's [discovery]) is reached through its mesh
gateways (proxy/gateway.py), for networks that do not route to each other: the watch of
`api.east` then lists east's passing `vmesh-gateway` instances instead, each at its `wan`
tagged address (`Service.TaggedAddresses`, as Consul's own mesh gateways register), with the
server name `api.east.<trust domain>` that the gateway routes by. A gateway registers with
both tagged addresses, `lan` (its own site's hosts) and `wan` (other sites').

The ACL token is mesh.toml's `consul_token` when it has one, else CONSUL_HTTP_TOKEN
(`agent_client`): an explicit setting outranks the environment, as with Consul's own tools
(py-consul on its own lets the environment win). A token the agent refuses (403: `ACL not
found`, `Permission denied`) is logged as such (`discovery_consul_acl_refused`, by the
registration, the watches and the KV policy watch) and named in `/ready` and in the 503 of a
service whose watch it refuses, not taken for an agent that is down.

py-consul is synchronous; each call runs in a worker thread, and a blocking
query lasts at most `wait` (plus Consul's jitter), which bounds shutdown.
"""

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import consul

from vm_mesh import defaults
from vm_mesh.backoff import full_jitter
from vm_mesh.blocking import in_own_thread
from vm_mesh.discovery import announced, sites
from vm_mesh.discovery.base import EndpointSet, Instance, NotDiscoverable
from vm_mesh.token_bucket import TokenBucket

log = logging.getLogger("vmesh.discovery.consul")

# The service meta carries what the TXT record carries over mDNS (DESIGN.md).
TRUST_DOMAIN_KEY = "td"  # the instance's mesh, as the mDNS TXT key of that name


@dataclass(frozen=True, slots=True)
class ConsulSettings:
    """Where the agent is and how we talk to it."""

    host: str = "127.0.0.1"
    port: int = 8500
    scheme: str = "http"
    token: str | None = None
    wait: str = "30s"  # how long one blocking query may last
    check_interval: str = "5s"
    check_timeout: str = "2s"
    check_host: str = "127.0.0.1"  # where the local agent reaches the admin port
    deregister_after: str = "1m"  # Consul's minimum; a dead host leaves the catalog after this
    resync_s: float = 30.0  # how often registrations the agent dropped are made again
    # while answers churn, one query per this many seconds after two at once (TokenBucket)
    query_interval_s: float = 1.0
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0
    # the datacenters that names like `api.east` may name; None: any the agent knows
    datacenters: tuple[str, ...] | None = None
    # the datacenters reached through their mesh gateways rather than straight
    gateways: tuple[str, ...] = ()


def agent_client(settings: ConsulSettings, **options: Any) -> consul.Consul:
    """A py-consul client of the agent `settings` name, sending `settings.token` when set and
    CONSUL_HTTP_TOKEN only otherwise (py-consul alone prefers the environment's)."""
    client = consul.Consul(host=settings.host, port=settings.port, scheme=settings.scheme,
                           **options)
    client.token = settings.token or os.environ.get("CONSUL_HTTP_TOKEN") or None
    return client


def next_index(previous: int, returned: int | str | None) -> int:
    """The index for the next blocking query, per Consul's blocking-query rules.

    An index lower than the one we had means the servers' state was reset (a
    restored snapshot, a new cluster): start again from 0 so the next query
    answers at once. An index below 1 is treated as 1 so a query never spins.
    """
    try:
        index = max(int(returned or 0), 1)
    except (TypeError, ValueError):
        return 0
    return 0 if index < previous else index


def backoff_delay(failures: int, settings: ConsulSettings) -> float:
    """Seconds to wait after `failures` consecutive failed queries: drawn from a window that
    doubles from `backoff_min_s` up to `backoff_max_s` (full jitter), so the proxies of every
    host do not all ask a restarted agent again at the same instant."""
    if failures <= 0:
        return 0.0
    return full_jitter(settings.backoff_min_s, settings.backoff_max_s, failures - 1)


def registration(
    instance: Instance,
    settings: ConsulSettings,
    trust_domain: str | None = None,
    wan: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for py-consul's `agent.service.register` for `instance`; the meta
    names `trust_domain` when it is known. `wan`: where other datacenters reach the instance
    (a mesh gateway), registered as its `wan` tagged address beside the `lan` one."""
    meta = {
        "id": instance.instance_id,
        "proto": instance.proto,
        "zone": instance.zone,
        "ver": instance.version,
        "admin": str(instance.admin_port or ""),
        "weight": str(instance.weight),  # Consul's own weights cannot say 0 (drained)
    }
    if trust_domain:
        meta[TRUST_DOMAIN_KEY] = trust_domain
    tagged = None
    if wan is not None:
        tagged = {"lan": {"address": instance.address, "port": instance.port},
                  "wan": {"address": wan[0], "port": wan[1]}}
    return {
        "name": instance.service,
        "service_id": instance.instance_id,
        "tagged_addresses": tagged,
        "address": instance.address,
        "port": instance.port,
        "meta": meta,
        # Consul requires both weights to be >= 1; the meta's `weight` says 0
        "weights": {"passing": max(instance.weight, 1), "warning": 1},
        "check": ready_check(instance, settings),
    }


def ready_check(instance: Instance, settings: ConsulSettings) -> dict[str, Any]:
    """The agent's check definition: HTTPS GET of the proxy's `/ready` on its admin port.

    TLSSkipVerify because our leaves name no host (module docstring). Without an
    admin port (never the case for a running proxy) it falls back to a TCP check
    of the inbound port; a mesh gateway's is always a TCP check of the port it carries
    connections on (its admin port, when it has one, is for scrapers).
    """
    timing = {
        "Interval": settings.check_interval,
        "Timeout": settings.check_timeout,
        "DeregisterCriticalServiceAfter": settings.deregister_after,
    }
    if instance.admin_port is None or instance.service == sites.GATEWAY_SERVICE:
        return {"Name": "vmesh inbound port", "TCP": instance.authority, **timing}
    host = f"[{settings.check_host}]" if ":" in settings.check_host else settings.check_host
    return {
        "Name": "vmesh proxy ready",
        "HTTP": f"https://{host}:{instance.admin_port}/ready",
        "Method": "GET",
        "TLSSkipVerify": True,
        **timing,
    }


def instance_from_entry(entry: Mapping[str, Any]) -> Instance:
    """The instance one `/v1/health/service` entry announces; ValueError saying why it
    announces none (no address, port or name, a port, `weight` or `admin` out of range:
    whoever may register in Consul writes them)."""
    service = entry.get("Service") or {}
    node = entry.get("Node") or {}
    address = service.get("Address") or node.get("Address") or ""  # "" means "the node's"
    name = service.get("Service") or ""
    if not address or not name:
        raise ValueError("no address" if name else "no service name")
    port = announced.port("port", service.get("Port"))
    if port is None:
        raise ValueError("no port")
    meta = service.get("Meta") or {}
    passing = (service.get("Weights") or {}).get("Passing")
    # ours from the meta (it may be 0); Consul's own for services registered otherwise
    weight = (announced.weight("weight", meta["weight"], 0) if meta.get("weight")
              else announced.weight("Weights.Passing", passing, 1))
    return Instance(
        service=name,
        instance_id=meta.get("id") or service.get("ID") or f"{name}@{address}:{port}",
        address=address,
        port=port,
        admin_port=announced.port("admin", meta.get("admin")),
        zone=meta.get("zone", ""),
        weight=weight,
        version=meta.get("ver", ""),
        proto=meta.get("proto") or "http",
    )


def wan_address(entry: Mapping[str, Any]) -> tuple[str, int] | None:
    """The `wan` tagged address of an entry's service, if it has one. Consul documents its
    fields as `address` and `port`; either case is taken."""
    tagged = (entry.get("Service") or {}).get("TaggedAddresses") or {}
    wan = tagged.get("wan") if isinstance(tagged, Mapping) else None
    if not isinstance(wan, Mapping):
        return None
    address = wan.get("address") or wan.get("Address")
    port = wan.get("port") or wan.get("Port")
    if not isinstance(address, str) or not address or not isinstance(port, int) or port <= 0:
        return None
    return address, port


def gateways_from_health(
    entries: list[Mapping[str, Any]] | None, server_name: str, trust_domain: str | None = None
) -> tuple[Instance, ...]:
    """The mesh gateways of a health answer for `vmesh-gateway` in another datacenter, each
    at its `wan` tagged address (its own address when it has none) and carrying
    `server_name`, in a stable order; those of another trust domain are left out."""
    gateways = []
    for entry, found in readable(entries, trust_domain):
        address, port = wan_address(entry) or (found.address, found.port)
        gateways.append(replace(found, address=address, port=port, server_name=server_name))
    return tuple(sorted(gateways, key=lambda i: i.instance_id))


def trust_domain_of(entry: Mapping[str, Any]) -> str | None:
    """The trust domain in an entry's `Service.Meta`; None when it names none (an older vmesh,
    or a service registered otherwise)."""
    meta = (entry.get("Service") or {}).get("Meta") or {}
    return meta.get(TRUST_DOMAIN_KEY) or None


def of_mesh(entry: Mapping[str, Any], trust_domain: str | None) -> bool:
    """Whether `entry` may be routed to from `trust_domain`'s mesh: it names that trust domain
    or none (module docstring); any entry when `trust_domain` is None."""
    found = trust_domain_of(entry)
    return trust_domain is None or found is None or found == trust_domain


def instances_from_health(
    entries: list[Mapping[str, Any]] | None, trust_domain: str | None = None
) -> tuple[Instance, ...]:
    """The instances of a health answer that belong to `trust_domain`'s mesh (`of_mesh`), in a
    stable order (unusable entries skipped)."""
    found = (instance for _, instance in readable(entries, trust_domain))
    return tuple(sorted(found, key=lambda i: i.instance_id))


def readable(entries: list[Mapping[str, Any]] | None, trust_domain: str | None
             ) -> Iterator[tuple[Mapping[str, Any], Instance]]:
    """The entries of `trust_domain`'s mesh (`of_mesh`) that announce an instance, with it
    (`unreadable` says why the others do not)."""
    for entry in entries or []:
        if of_mesh(entry, trust_domain):
            with contextlib.suppress(ValueError):
                yield entry, instance_from_entry(entry)


def unreadable(entries: list[Mapping[str, Any]] | None, trust_domain: str | None
               ) -> dict[str, str]:
    """Why each entry of `trust_domain`'s mesh that announces no instance does not, by its
    service id."""
    found = {}
    for entry in entries or []:
        if of_mesh(entry, trust_domain):
            try:
                instance_from_entry(entry)
            except ValueError as exc:
                found[str((entry.get("Service") or {}).get("ID") or "")] = str(exc)
    return found


def check_allowed(datacenter: str, allowed: tuple[str, ...] | None) -> None:
    """NotDiscoverable unless the allow-list `allowed` (None: no list) has `datacenter`."""
    if allowed is None or datacenter in allowed:
        return
    listed = f"it lists {', '.join(allowed)}" if allowed else "it lists none"
    raise NotDiscoverable(
        "discovery.datacenter_not_allowed",
        f"datacenter {datacenter} is not in `datacenters` of mesh.toml's [discovery] ({listed})",
    )


def check_known(datacenter: str, known: object) -> None:
    """NotDiscoverable unless the agent's answer to `/v1/catalog/datacenters`, `known`, lists
    `datacenter`; ValueError when that answer is no list of names."""
    if not isinstance(known, list) or not all(isinstance(name, str) for name in known):
        raise ValueError(f"/v1/catalog/datacenters answered {known!r}, not a list of names")
    if datacenter not in known:
        raise NotDiscoverable(
            "discovery.unknown_datacenter",
            f"the consul agent knows no datacenter {datacenter} (it knows {', '.join(known)}); "
            "a site is reached over Consul WAN federation",
        )


def strangers(entries: list[Mapping[str, Any]] | None, trust_domain: str | None
              ) -> dict[str, Mapping[str, Any]]:
    """The entries of another trust domain or of none, by service id (none without a
    `trust_domain`)."""
    if not trust_domain:
        return {}
    return {str((e.get("Service") or {}).get("ID") or ""): e for e in entries or []
            if trust_domain_of(e) != trust_domain}


def log_refused_token(exc: consul.ACLPermissionDenied, needs: str, then: str,
                      **fields: object) -> None:
    """Log that the agent refused our ACL token (`discovery_consul_acl_refused`): a setting to
    fix, not an agent that is down. `needs`: what the token must allow; `then`: what the
    caller does meanwhile."""
    log.error(f"the consul agent refused our ACL token; set consul_token in mesh.toml's "
              f"[discovery] to a token that may {needs} ({then})",
              extra={"event": "discovery_consul_acl_refused", "error": str(exc), **fields})


class ConsulDiscovery:
    """A `Discovery` backend over the local Consul agent's HTTP API.

    With a `trust_domain`, registrations carry it and watches leave out instances
    that name another one (module docstring).
    """

    def __init__(
        self, settings: ConsulSettings | None = None, trust_domain: str | None = None
    ) -> None:
        self.settings = settings or ConsulSettings()
        self.trust_domain = trust_domain
        self._client = agent_client(self.settings)
        self._registered: dict[str, Instance] = {}
        self._wan: dict[str, tuple[str, int]] = {}  # instance id -> its wan address, if any
        self._retrying: dict[str, asyncio.Task[None]] = {}
        self._in_flight: dict[str, asyncio.Future[Any]] = {}
        self._refused: dict[str, str] = {}  # instance id -> why the agent refused our token
        self._resync: asyncio.Task[None] | None = None

    async def register(self, instance: Instance, wan: tuple[str, int] | None = None) -> None:
        """Register with the agent; when it is down, keep trying in the background.

        A proxy must come up (and route on its last known good set) while the
        local agent restarts, so an unreachable agent is logged, not raised. `wan`: where
        other datacenters reach the instance (a mesh gateway).
        """
        if wan is not None:
            self._wan[instance.instance_id] = wan
        try:
            await self._register_once(instance)
        except consul.ACLPermissionDenied as exc:
            self._refused[instance.instance_id] = str(exc)
            log_refused_token(exc, "register this service", "registering again in the "
                              "background", instance=instance.instance_id)
            self._retry_in_background(instance)
        except (consul.ConsulException, OSError) as exc:
            log.warning("consul agent unreachable; registering in the background",
                        extra={"event": "discovery_consul_error", "instance": instance.instance_id,
                               "error": str(exc) or type(exc).__name__})
            self._retry_in_background(instance)

    def _retry_in_background(self, instance: Instance) -> None:
        """Keep registering `instance` with backoff until the agent takes it."""
        previous = self._retrying.pop(instance.instance_id, None)
        if previous is not None:
            previous.cancel()
        self._retrying[instance.instance_id] = asyncio.create_task(self._retry(instance))

    async def _register_once(self, instance: Instance) -> None:
        kwargs = registration(instance, self.settings, self.trust_domain,
                              self._wan.get(instance.instance_id))
        # shielded: a registration already on the wire completes even when its retry task is
        # cancelled, and `deregister`/`close` wait for it, so nothing is left behind
        call = asyncio.ensure_future(
            asyncio.to_thread(self._client.agent.service.register, **kwargs)
        )
        self._in_flight[instance.instance_id] = call
        try:
            await asyncio.shield(call)
        finally:
            if call.done():
                self._in_flight.pop(instance.instance_id, None)
        self._registered[instance.instance_id] = instance
        self._refused.pop(instance.instance_id, None)
        log.info("registered with consul",
                 extra={"instance": instance.instance_id, "addr": instance.authority})
        if self._resync is None:
            self._resync = asyncio.create_task(self._register_what_the_agent_dropped())

    async def _register_what_the_agent_dropped(self) -> None:
        """Every `resync_s`, register again the instances the agent no longer has (module
        docstring); an agent that does not answer is left to the watches to report."""
        while True:
            await asyncio.sleep(self.settings.resync_s)
            try:
                known = await asyncio.to_thread(self._client.agent.services)
            except (consul.ConsulException, OSError):
                continue
            for instance_id, instance in list(self._registered.items()):
                if instance_id in known or instance_id in self._retrying:
                    continue
                if self._registered.get(instance_id) is not instance:  # withdrawn meanwhile
                    continue
                log.warning("the consul agent dropped our registration; registering again",
                            extra={"event": "discovery_consul_reregistered",
                                   "instance": instance_id})
                await self.register(instance)

    async def _retry(self, instance: Instance) -> None:
        failures = 1
        while True:
            await asyncio.sleep(backoff_delay(failures, self.settings))
            try:
                await self._register_once(instance)
            except consul.ACLPermissionDenied as exc:
                self._refused[instance.instance_id] = str(exc)
                failures += 1
                continue
            except (consul.ConsulException, OSError):
                self._refused.pop(instance.instance_id, None)
                failures += 1
                continue
            self._retrying.pop(instance.instance_id, None)
            return

    def waiting_for(self, instance: Instance) -> str | None:
        """Until the agent has accepted the instance's registration (whatever its check of
        `/ready` says: the check comes after)."""
        if instance.instance_id in self._registered:
            return None
        settings = self.settings
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        waiting = f"registering with consul at {settings.scheme}://{host}:{settings.port}"
        refused = self._refused.get(instance.instance_id)
        if refused is not None and instance.instance_id in self._retrying:
            waiting += (f" (the agent refused the ACL token ({refused}); set consul_token in "
                        "mesh.toml's [discovery]; trying again)")
        elif instance.instance_id in self._retrying:
            waiting += " (the agent did not answer; trying again)"
        return waiting

    async def deregister(self, instance: Instance) -> None:
        await self._withdraw(instance.instance_id)

    async def _withdraw(self, instance_id: str) -> None:
        """Stop registering `instance_id` and take it out of the agent if it may be there."""
        retrying = self._retrying.pop(instance_id, None)
        self._refused.pop(instance_id, None)
        if retrying is not None:
            retrying.cancel()
        in_flight = self._in_flight.pop(instance_id, None)
        if in_flight is not None:  # a registration on the wire: let it land, then undo it
            await asyncio.gather(in_flight, return_exceptions=True)
        known = self._registered.pop(instance_id, None) is not None
        self._wan.pop(instance_id, None)
        if not known and in_flight is None:
            return
        if await asyncio.to_thread(self._client.agent.service.deregister, instance_id):
            log.info("deregistered from consul",
                     extra={"event": "discovery_consul_deregistered", "instance": instance_id})
        else:  # 404: reaped after its check stayed critical, or an agent restarted without data
            log.info("not deregistered from consul: the agent no longer had it",
                     extra={"event": "discovery_consul_already_gone", "instance": instance_id})

    def _query(self, service: str, datacenter: str | None, index: int) -> tuple[Any, Any]:
        return self._client.health.service(
            service, passing=True, index=index or None, wait=self.settings.wait, dc=datacenter
        )

    async def watch(self, service: str) -> AsyncIterator[EndpointSet]:
        """Complete sets of passing instances of `service` (`api`, or `api.east` in another
        datacenter); retries with backoff, raises only NotDiscoverable (a datacenter not
        allowed or not known to the agent, before any set).

        When the agent stops answering, the last set is yielded once more
        marked `stale` (with the time it was last confirmed), so users of the
        set can report its age; `lastknown` serves a saved set when there is
        none yet.
        """
        name, datacenter = sites.split(service)
        if datacenter is not None:
            check_allowed(datacenter, self.settings.datacenters)
        gateways_of = datacenter if datacenter in self.settings.gateways else ""
        server_name = sites.gateway_server_name(
            name, gateways_of, self.trust_domain or defaults.TRUST_DOMAIN)
        queried = sites.GATEWAY_SERVICE if gateways_of else name
        unchecked = datacenter  # the datacenter still to find in the agent's list
        index = 0
        failures = 0
        last: tuple[Instance, ...] | None = None
        confirmed_at = 0.0
        noted: set[str] = set()  # the strangers of the last answer, logged when they came
        rejected: set[str] = set()  # its entries that announce no instance, logged likewise
        pace = TokenBucket(self.settings.query_interval_s, now=time.monotonic())
        while True:
            await asyncio.sleep(pace.delay(time.monotonic()))
            try:
                if unchecked is not None:
                    check_known(unchecked, await asyncio.to_thread(
                        self._client.catalog.datacenters))
                    unchecked = None
                returned, entries = await in_own_thread(self._query, queried, datacenter, index,
                                                        name=f"consul-watch {service}")
            except (consul.ConsulException, OSError, ValueError) as exc:
                failures += 1
                delay = backoff_delay(failures, self.settings)
                if isinstance(exc, consul.ACLPermissionDenied):
                    log_refused_token(exc, f"read {queried}", "retrying", dst_service=service,
                                      retry_in_s=delay)
                    error = f"the consul agent refused our ACL token ({exc})"
                else:
                    log.warning("consul watch failed; retrying",
                                extra={"event": "discovery_consul_error", "dst_service": service,
                                       "error": str(exc) or type(exc).__name__,
                                       "retry_in_s": delay})
                    error = f"consul: {str(exc) or type(exc).__name__}"
                index = 0
                if failures == 1:
                    yield EndpointSet(service, last or (), source="consul",
                                      updated_at=confirmed_at, stale=True,
                                      gateways_of=gateways_of, error=error)
                await asyncio.sleep(delay)
                continue
            recovered = failures > 0
            failures = 0
            confirmed_at = time.time()
            new_index = next_index(index, returned)
            if index and new_index == 0:
                log.info("consul index went backwards; starting over",
                         extra={"dst_service": service, "was": index, "now": returned})
            index = new_index
            noted = self._note_strangers(entries, noted)
            rejected = self._note_unreadable(entries, rejected)
            instances = (gateways_from_health(entries, server_name, self.trust_domain)
                         if gateways_of else instances_from_health(entries, self.trust_domain))
            if instances != last or recovered:
                last = instances
                yield EndpointSet(service, instances, source="consul", updated_at=confirmed_at,
                                  gateways_of=gateways_of)

    def _note_strangers(
        self, entries: list[Mapping[str, Any]] | None, noted: set[str]
    ) -> set[str]:
        """Log each entry of another trust domain (left out) or of none (kept, trusted by its
        certificate alone) that is not in `noted`, the strangers of the answer before; returns
        this answer's, so an instance is logged once while it stays and the set holds no more
        than one answer's instances."""
        found = strangers(entries, self.trust_domain)
        for instance, entry in found.items():
            if instance in noted:
                continue
            trust_domain = trust_domain_of(entry)
            about = {"instance": instance,
                     "dst_service": (entry.get("Service") or {}).get("Service")}
            if trust_domain is None:
                log.info("consul instance names no trust domain (an older vmesh?); kept, "
                         "trusted by its certificate alone",
                         extra={"event": "discovery_consul_unscoped", **about})
            else:
                log.info("ignoring a consul instance of another trust domain",
                         extra={"event": "discovery_consul_foreign", "trust_domain": trust_domain,
                                **about})
        return set(found)

    def _note_unreadable(
        self, entries: list[Mapping[str, Any]] | None, rejected: set[str]
    ) -> set[str]:
        """Log each entry of our mesh that announces no instance (left out) and is not in
        `rejected`, those of the answer before; returns this answer's, so an entry is logged
        once while it stays so."""
        found = unreadable(entries, self.trust_domain)
        for instance, why in found.items():
            if instance not in rejected:
                log.warning("ignoring a consul entry that announces no usable instance",
                            extra={"event": "discovery_consul_rejected",
                                   "reason": "discovery.bad_meta", "instance": instance,
                                   "detail": why})
        return set(found)

    async def close(self, withdraw: bool = True) -> None:
        if self._resync is not None:
            self._resync.cancel()
            self._resync = None
        if not withdraw:  # the successor re-registered the same ids; they stay in the agent
            for task in self._retrying.values():
                task.cancel()
            self._retrying.clear()
            return
        for instance_id in {*self._retrying, *self._in_flight, *self._registered}:
            try:
                await self._withdraw(instance_id)
            except (consul.ConsulException, OSError) as exc:
                log.warning("could not deregister from consul; its check will remove it",
                            extra={"instance": instance_id, "error": str(exc)})
