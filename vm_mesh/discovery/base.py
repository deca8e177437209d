"""The discovery interface shared by the mDNS, Consul and static-file backends."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Instance:
    """One instance of a service: where its proxy takes mTLS traffic and serves admin.

    An instance with a `server_name` is another site's mesh gateway, which carries the
    connections that present that name (SNI) to an instance of the service there; its
    address and port are the gateway's (vm_mesh.discovery.sites.gateway_server_name).
    """

    service: str
    instance_id: str
    address: str
    port: int
    admin_port: int | None = None
    zone: str = ""
    weight: int = 100
    version: str = ""
    proto: str = "http"
    server_name: str = ""

    @property
    def authority(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class EndpointSet:
    """The complete set of instances of a service at one moment, and where it came from.

    `source` names the backend (`mdns`, `consul`, `static`, or `last-known-good`);
    `updated_at` is when the backend last confirmed this set (epoch seconds), so
    its age can be shown wherever it is used.
    """

    service: str
    instances: tuple[Instance, ...]
    source: str
    updated_at: float
    stale: bool = False
    # the datacenter whose mesh gateways the instances are (their `server_name` names the
    # service); "" when they are instances of the service itself
    gateways_of: str = ""
    # why the backend's last query failed, on a set kept stale meanwhile ("" when it answered)
    error: str = ""


class NotDiscoverable(Exception):
    """What a watch raises for a name its backend can never serve, so that it is refused rather
    than watched again and again: a datacenter the Consul agent does not know, or another site
    named over mDNS. `reason` is stable and machine-readable (`discovery.unknown_datacenter`)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Discovery(Protocol):
    """A discovery backend."""

    async def register(self, instance: Instance) -> None:
        """Announce an instance (idempotent)."""

    async def deregister(self, instance: Instance) -> None:
        """Withdraw an instance (on drain)."""

    def waiting_for(self, instance: Instance) -> str | None:
        """What the backend still waits for before it has taken `instance`'s registration
        (`registering with consul at http://127.0.0.1:8500`); None once it has."""

    def watch(self, service: str) -> AsyncIterator[EndpointSet]:
        """Complete endpoint sets of `service`, one each time it changes; NotDiscoverable when
        the backend cannot serve that name at all."""
        ...

    async def close(self, withdraw: bool = True) -> None:
        """Withdraw everything registered (unless `withdraw` is false: a successor process
        announces the same instances) and release the backend."""
