"""mDNS discovery with python-zeroconf: no server to run, one LAN (or one host's loopback).

Each proxy announces `<instance>._vmesh._tcp.local.` with TXT keys `svc`,
`id`, `proto`, `zone`, `weight`, `ver`, `admin`, and `td`, its trust domain;
watchers browse the type and keep the instances whose `svc` matches and whose
`td` is their own (a record without `td`, from an older vmesh, is kept): two
meshes on one LAN, or two demos on one machine, never route to each other's
instances, whose certificates they could not verify anyway. Deregistering
sends goodbye packets, so peers drop a drained instance at once instead of
waiting for its TTL.

An instance that vanishes without a goodbye (host cut off, power lost) is
found out by continuous querying (RFC 6762 §5.2) of the SRV record of every
instance of a watched service: our SRV and address records carry a TTL of
`HOST_TTL_S`; once half of it has passed without a refresh, the watcher asks
for the record again (every `LIVENESS_TICK_S`), and an instance whose SRV
expires unanswered is left out of the set as silent until it answers again.
Answers are multicast, so one query refreshes every peer's cache and each
instance costs about one query and one answer per `HOST_TTL_S / 2` on the
LAN, whatever the number of watchers. (zeroconf's own browser refreshes only
PTR records, whose TTL it clamps to at least 1125 s, and the RFC's default
host TTL is 120 s: far too slow for routing.) Meanwhile the proxy's balancer
and breaker keep traffic off a silent instance.

mDNS is one LAN: a name of another site (`api.east`, vm_mesh.discovery.sites)
is refused at once (NotDiscoverable), never browsed for.
"""

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace

from zeroconf import (
    DNSOutgoing,
    DNSQuestion,
    DNSRecord,
    InterfaceChoice,
    IPVersion,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
    current_time_millis,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

from vm_mesh.defaults import MDNS_SERVICE_TYPE
from vm_mesh.discovery import announced, sites
from vm_mesh.discovery.base import EndpointSet, Instance, NotDiscoverable

log = logging.getLogger("vmesh.discovery.mdns")

RESOLVE_TIMEOUT_MS = 3000
FIRST_BROWSE_S = 1.5
HOST_TTL_S = 10  # TTL of our SRV and A records: a silent instance leaves within 1.5x this
LIVENESS_TICK_S = 1.0  # how often the SRV records of watched instances are looked at
DNS_TYPE_SRV = 33
DNS_TYPE_PTR = 12
DNS_CLASS_IN = 1
DNS_FLAGS_QUERY = 0
ANSWERS_FLUSH_S = 1.5  # longest a queued answer waits in zeroconf (1 s + 200 ms aggregation)
ANSWERS_POLL_S = 0.05
RECORD_TTL_S = 15  # every record of ours (PTR, SRV, TXT, A): see the module docstring


def txt_record(instance: Instance, trust_domain: str | None = None) -> dict[str, str]:
    """The TXT keys DESIGN.md fixes for an instance, and `td` when the trust domain is known."""
    record = {
        "svc": instance.service,
        "id": instance.instance_id,
        "proto": instance.proto,
        "zone": instance.zone,
        "weight": str(instance.weight),
        "ver": instance.version,
        "admin": str(instance.admin_port or ""),
    }
    if trust_domain:
        record["td"] = trust_domain
    return record


def trust_domain_of(properties: Mapping[bytes, bytes | None]) -> str | None:
    """The `td` key of a TXT record; None when the record has none (an older vmesh)."""
    value = properties.get(b"td")
    return value.decode(errors="replace") if value else None


TXT_KEYS = ("svc", "id", "proto", "zone", "weight", "ver", "admin")


def _txt_text(properties: Mapping[bytes, bytes | None]) -> dict[str, str]:
    """The vmesh keys of a TXT record as text; ValueError naming a key that is not UTF-8. Keys
    of others are left alone, whatever their bytes."""
    text = {}
    for key in TXT_KEYS:
        try:
            text[key] = (properties.get(key.encode()) or b"").decode()
        except UnicodeDecodeError:
            raise ValueError(f"{key} is not UTF-8") from None
    return text


def instance_from_txt(
    properties: Mapping[bytes, bytes | None], address: str, port: int
) -> Instance:
    """The instance a resolved record announces; ValueError saying why it announces none (a
    key missing, not UTF-8 or out of range: the bytes come from anyone on the LAN)."""
    text = _txt_text(properties)
    for key in ("svc", "id"):
        if not text[key]:
            raise ValueError(f"no {key}")
    return Instance(
        service=text["svc"],
        instance_id=text["id"],
        address=address,
        port=port,
        admin_port=announced.port("admin", text["admin"]),
        zone=text["zone"],
        weight=announced.weight("weight", text["weight"], 100),
        version=text["ver"],
        proto=text["proto"] or "http",
    )


class MdnsDiscovery:
    """A `Discovery` backend over multicast DNS.

    With a `trust_domain`, registrations carry it and watches leave out instances
    that announce another one. A new watch waits up to `first_browse_s` for the
    first instance of its service before it reports an empty set.
    """

    def __init__(
        self,
        interfaces: list[str] | None = None,
        trust_domain: str | None = None,
        first_browse_s: float = FIRST_BROWSE_S,
    ) -> None:
        self.trust_domain = trust_domain
        self.first_browse_s = first_browse_s
        # names of other trust domains' instances the browse holds, logged as they came
        self._foreign: set[str] = set()
        self._rejected: set[str] = set()  # names whose records announce no usable instance
        self._zeroconf = AsyncZeroconf(
            interfaces=interfaces or InterfaceChoice.All, ip_version=IPVersion.V4Only
        )
        self._registered: dict[str, ServiceInfo] = {}
        self._known: dict[str, Instance] = {}
        self._browser: AsyncServiceBrowser | None = None
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._updated_at = time.time()
        self._watched: set[str] = set()
        self._silent: set[str] = set()  # names whose SRV record expired unanswered
        self._liveness: asyncio.Task[None] | None = None

    async def register(self, instance: Instance) -> None:
        info = ServiceInfo(
            MDNS_SERVICE_TYPE,
            f"{instance.instance_id}.{MDNS_SERVICE_TYPE}",
            addresses=[socket.inet_aton(instance.address)],
            port=instance.port,
            properties=txt_record(instance, self.trust_domain),
            server=f"{instance.instance_id}.local.",
            host_ttl=RECORD_TTL_S,
            other_ttl=RECORD_TTL_S,
        )
        # another host may already use this instance name: take a free variant, keep the TXT id
        self._ask_who_announces()
        await self._zeroconf.async_register_service(info, allow_name_change=True)
        self._registered[instance.instance_id] = info
        log.info(
            "registered over mDNS",
            extra={"instance": instance.instance_id, "addr": instance.authority,
                   "record": info.name},
        )

    def waiting_for(self, instance: Instance) -> str | None:
        """Until `register` has probed for the instance's name and announced it."""
        if instance.instance_id in self._registered:
            return None
        return f"announcing {instance.instance_id} over mDNS"

    def _ask_who_announces(self) -> None:
        """Ask for every instance of our type, answers multicast. zeroconf's probing renames
        on a name its cache holds, but the answers to its probes are unicast, and on a host
        where several processes share port 5353 (a demo, a test mesh) only one of them gets a
        unicast answer; multicast answers reach all, within the probing's 750 ms."""
        query = DNSOutgoing(DNS_FLAGS_QUERY)
        query.add_question(DNSQuestion(MDNS_SERVICE_TYPE, DNS_TYPE_PTR, DNS_CLASS_IN))
        self._zeroconf.zeroconf.async_send(query)

    async def deregister(self, instance: Instance) -> None:
        info = self._registered.pop(instance.instance_id, None)
        if info is not None:
            await self._say_goodbye(info)

    async def _say_goodbye(self, info: ServiceInfo) -> None:
        """Withdraw `info` and wait until its goodbye packets are out (three, over 250 ms):
        zeroconf hands back the sending as a task, and a proxy that closes its sockets
        before the task has run leaves its peers routing to it until the records expire."""
        zeroconf = self._zeroconf.zeroconf
        # stop answering for it first, and let the answers already queued go out (zeroconf
        # delays multicast answers, up to 1.2 s): one sent after the goodbye would put the
        # records back in the peers' caches for their whole TTL
        zeroconf.registry.async_remove(info)
        for _ in range(int(ANSWERS_FLUSH_S / ANSWERS_POLL_S)):
            if not (zeroconf.out_queue.queue or zeroconf.out_delay_queue.queue):
                break
            await asyncio.sleep(ANSWERS_POLL_S)
        sending = await self._zeroconf.async_unregister_service(info)
        await sending

    def _on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            self._silent.discard(name)
            self._foreign.discard(name)  # forgotten: logged again if it comes back
            self._rejected.discard(name)
            if self._known.pop(name, None) is not None:
                self._notify()
            return
        task = asyncio.ensure_future(self._resolve(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, name: str) -> None:
        info = await self._zeroconf.async_get_service_info(
            MDNS_SERVICE_TYPE, name, RESOLVE_TIMEOUT_MS
        )
        if info is None or not info.parsed_addresses() or info.port is None:
            return
        if self._is_foreign(name, trust_domain_of(info.properties)):
            return
        try:
            instance = instance_from_txt(info.properties, info.parsed_addresses()[0], info.port)
        except ValueError as exc:
            self._reject(name, str(exc))
            return
        self._rejected.discard(name)
        if self._known.get(name) != instance:
            self._known[name] = instance
            self._notify()

    def _reject(self, name: str, why: str) -> None:
        """`name`'s record announces no usable instance: it leaves the sets (whatever it said
        before), logged once while it stays so (`_on_change` forgets it when it leaves)."""
        if name not in self._rejected:
            self._rejected.add(name)
            log.warning("ignoring an mDNS record that announces no usable instance",
                        extra={"event": "discovery_mdns_rejected", "reason": "discovery.bad_txt",
                               "record": name, "detail": why})
        if self._known.pop(name, None) is not None:
            self._notify()

    def _is_foreign(self, name: str, trust_domain: str | None) -> bool:
        """Whether `name` announces another trust domain than ours (logged once while the
        browse holds it: `_on_change` forgets it when it leaves, so the set stays bounded)."""
        if not self.trust_domain or not trust_domain or trust_domain == self.trust_domain:
            return False
        if name not in self._foreign:
            self._foreign.add(name)
            log.info("ignoring an mDNS instance of another trust domain",
                     extra={"event": "discovery_mdns_foreign", "record": name,
                            "trust_domain": trust_domain})
        return True

    def _notify(self) -> None:
        self._updated_at = time.time()
        self._changed.set()
        self._changed = asyncio.Event()

    def _srv(self, name: str) -> DNSRecord | None:
        """The freshest SRV record of `name` in zeroconf's cache, if any."""
        records = self._zeroconf.zeroconf.cache.async_all_by_details(
            name, DNS_TYPE_SRV, DNS_CLASS_IN
        )
        return max(records, key=lambda r: r.created, default=None)

    async def _keep_alive(self) -> None:
        """Continuous querying of the SRV records of watched instances (module docstring)."""
        while True:
            await asyncio.sleep(LIVENESS_TICK_S)
            now = current_time_millis()  # the clock zeroconf stamps records with
            stale = []
            for name, instance in list(self._known.items()):
                if instance.service not in self._watched:
                    continue
                srv = self._srv(name)
                alive = srv is not None and not srv.is_expired(now)
                if alive == (name in self._silent):
                    self._mark(name, instance, alive, srv)
                if srv is None or srv.is_stale(now):  # past half its TTL, or gone
                    stale.append(name)
            if stale:
                query = DNSOutgoing(DNS_FLAGS_QUERY)
                for name in stale:
                    query.add_question(DNSQuestion(name, DNS_TYPE_SRV, DNS_CLASS_IN))
                self._zeroconf.zeroconf.async_send(query)

    def _mark(self, name: str, instance: Instance, alive: bool, srv: DNSRecord | None) -> None:
        if alive:
            self._silent.discard(name)
            log.info("mDNS instance answers again",
                     extra={"instance": instance.instance_id, "dst_service": instance.service})
        else:
            self._silent.add(name)
            log.warning("mDNS instance stopped answering; leaving it out until it answers",
                        extra={"event": "discovery_mdns_silent", "instance": instance.instance_id,
                               "dst_service": instance.service,
                               "ttl_s": srv.ttl if srv is not None else None})
        self._notify()

    def current(self, service: str) -> EndpointSet:
        instances = tuple(
            sorted(
                (
                    i
                    for name, i in self._known.items()
                    if i.service == service and name not in self._silent
                ),
                key=lambda i: i.instance_id,
            )
        )
        return EndpointSet(service, instances, source="mdns", updated_at=self._updated_at)

    def browse(self) -> None:
        """Start following the announcements of every vmesh instance (idempotent)."""
        if self._browser is None:
            self._browser = AsyncServiceBrowser(
                self._zeroconf.zeroconf, MDNS_SERVICE_TYPE, handlers=[self._on_change]
            )
            self._liveness = asyncio.create_task(self._keep_alive())

    async def resolving(self, within: float) -> None:
        """Wait, `within` seconds at most, for the instances announced but not resolved yet
        (their records come in answers of their own, later under load)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within)

    def instances(self) -> tuple[Instance, ...]:
        """Every instance of any service seen so far and not silent (for the console)."""
        return tuple(sorted((i for name, i in self._known.items() if name not in self._silent),
                            key=lambda i: (i.service, i.instance_id)))

    async def watch(self, service: str) -> AsyncIterator[EndpointSet]:
        datacenter = sites.split(service)[1]
        if datacenter is not None:
            raise NotDiscoverable(
                "discovery.sites_need_consul",
                f"{service} names datacenter {datacenter}, another site; mDNS discovery sees "
                "one LAN only: reaching other sites needs the Consul backend "
                '([discovery] backend = "consul" in mesh.toml, over WAN federation)',
            )
        self._watched.add(service)
        self.browse()
        last: EndpointSet | None = None
        # give the first browse a moment, so a fresh proxy does not start with "no instances":
        # other services' instances resolving first must not end the wait
        deadline = asyncio.get_running_loop().time() + self.first_browse_s
        while not self.current(service).instances:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        while True:
            changed = self._changed
            view = self.current(service)
            if last is None and not view.instances:
                # nothing heard yet is not an answer that there is nothing (multicast may not
                # work yet): stale, so a saved set is served instead and not overwritten
                view = replace(view, stale=True)
            if last is None or view.instances != last.instances:
                last = view
                yield view
            await changed.wait()

    async def close(self, withdraw: bool = True) -> None:
        if self._liveness is not None:
            self._liveness.cancel()
        if self._browser is not None:
            await self._browser.async_cancel()
        for info in list(self._registered.values()):
            if not withdraw:  # forgotten without goodbye packets: the successor answers for it
                self._zeroconf.zeroconf.registry.async_remove(info)
                continue
            with contextlib.suppress(Exception):
                await self._say_goodbye(info)
        self._registered.clear()
        await self._zeroconf.async_close()
