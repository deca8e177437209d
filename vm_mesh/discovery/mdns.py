"""mDNS discovery with python-zeroconf: no server to run, one LAN (or one host's loopback).

Each proxy announces `<instance>._vmesh._tcp.local.` with TXT keys `svc`,
`id`, `proto`, `zone`, `weight`, `ver`, `admin`; watchers browse the type and
keep the instances whose `svc` matches. Deregistering sends goodbye packets,
so peers drop a drained instance at once instead of waiting for its TTL.
"""

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Mapping

from zeroconf import InterfaceChoice, IPVersion, ServiceInfo, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

from vm_mesh.defaults import MDNS_SERVICE_TYPE
from vm_mesh.discovery.base import EndpointSet, Instance

log = logging.getLogger("vmesh.discovery.mdns")

RESOLVE_TIMEOUT_MS = 3000
FIRST_BROWSE_S = 1.5


def txt_record(instance: Instance) -> dict[str, str]:
    """The TXT keys DESIGN.md fixes for an instance."""
    return {
        "svc": instance.service,
        "id": instance.instance_id,
        "proto": instance.proto,
        "zone": instance.zone,
        "weight": str(instance.weight),
        "ver": instance.version,
        "admin": str(instance.admin_port or ""),
    }


def instance_from_txt(
    properties: Mapping[bytes, bytes | None], address: str, port: int
) -> Instance | None:
    """An instance from a resolved record; None when it is not a vmesh record."""
    text = {k.decode(): (v or b"").decode() for k, v in properties.items()}
    if not text.get("svc") or not text.get("id"):
        return None
    try:
        weight = int(text.get("weight") or 100)
        admin = int(text["admin"]) if text.get("admin") else None
    except ValueError:
        return None
    return Instance(
        service=text["svc"],
        instance_id=text["id"],
        address=address,
        port=port,
        admin_port=admin,
        zone=text.get("zone", ""),
        weight=weight,
        version=text.get("ver", ""),
        proto=text.get("proto") or "http",
    )


class MdnsDiscovery:
    """A `Discovery` backend over multicast DNS."""

    def __init__(self, interfaces: list[str] | None = None) -> None:
        self._zeroconf = AsyncZeroconf(
            interfaces=interfaces or InterfaceChoice.All, ip_version=IPVersion.V4Only
        )
        self._registered: dict[str, ServiceInfo] = {}
        self._known: dict[str, Instance] = {}
        self._browser: AsyncServiceBrowser | None = None
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._updated_at = time.time()

    async def register(self, instance: Instance) -> None:
        info = ServiceInfo(
            MDNS_SERVICE_TYPE,
            f"{instance.instance_id}.{MDNS_SERVICE_TYPE}",
            addresses=[socket.inet_aton(instance.address)],
            port=instance.port,
            properties=txt_record(instance),
            server=f"{instance.instance_id}.local.",
        )
        # another host may already use this instance name: take a free variant, keep the TXT id
        await self._zeroconf.async_register_service(info, allow_name_change=True)
        self._registered[instance.instance_id] = info
        log.info(
            "registered over mDNS",
            extra={"instance": instance.instance_id, "addr": instance.authority},
        )

    async def deregister(self, instance: Instance) -> None:
        info = self._registered.pop(instance.instance_id, None)
        if info is not None:
            await self._zeroconf.async_unregister_service(info)  # goodbye packets

    def _on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
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
        instance = instance_from_txt(info.properties, info.parsed_addresses()[0], info.port)
        if instance is not None and self._known.get(name) != instance:
            self._known[name] = instance
            self._notify()

    def _notify(self) -> None:
        self._updated_at = time.time()
        self._changed.set()
        self._changed = asyncio.Event()

    def current(self, service: str) -> EndpointSet:
        instances = tuple(
            sorted(
                (i for i in self._known.values() if i.service == service),
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

    def instances(self) -> tuple[Instance, ...]:
        """Every instance of any service seen so far (for the console), by instance id."""
        return tuple(sorted(self._known.values(), key=lambda i: (i.service, i.instance_id)))

    async def watch(self, service: str) -> AsyncIterator[EndpointSet]:
        self.browse()
        last: EndpointSet | None = None
        if not self.current(service).instances:
            # give the first browse a moment, so a fresh proxy does not start with "no instances"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), FIRST_BROWSE_S)
        while True:
            changed = self._changed
            view = self.current(service)
            if last is None or view.instances != last.instances:
                last = view
                yield view
            await changed.wait()

    async def close(self) -> None:
        if self._browser is not None:
            await self._browser.async_cancel()
        for info in list(self._registered.values()):
            with contextlib.suppress(Exception):
                await self._zeroconf.async_unregister_service(info)
        self._registered.clear()
        await self._zeroconf.async_close()
