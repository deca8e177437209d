"""An admin server run alone, on a unix socket in the test's event loop, with what a proxy
would tell it fixed."""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from proxy.admin import AdminServer, ProxyState
from proxy.events import EventBus
from proxy.observability import Observability


class FixedProxyFacts:
    """A ready proxy of service `api` with nothing in flight, no upstreams and no chain."""

    service = "api"

    def ready(self) -> tuple[bool, str]:
        return True, "listeners up"

    def in_flight(self) -> int:
        return 0

    def in_flight_inbound(self) -> int:
        return 0

    def open_connections(self) -> int:
        return 0

    def endpoints(self) -> dict:
        return {"upstreams": []}

    def certs(self) -> dict:
        return {"chain": []}

    def config(self) -> dict:
        return {"service": "api"}


@dataclass
class LocalAdmin:
    """A running admin server: its bus, observability and unix socket."""

    server: AdminServer
    bus: EventBus
    obs: Observability
    socket_path: Path

    def client(self) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(uds=str(self.socket_path))
        return httpx.AsyncClient(transport=transport, base_url="http://admin", timeout=10)


@contextlib.asynccontextmanager
async def local_admin(
    directory: Path,
    facts: ProxyState | None = None,
    bus: EventBus | None = None,
    *,
    idle_timeout: float = 60.0,
    request_timeout: float = 10.0,
) -> AsyncIterator[LocalAdmin]:
    """An admin server on `directory/api.sock`, closed on the way out."""
    bus = bus or EventBus()
    observability = Observability.attach(bus)
    server = AdminServer(facts or FixedProxyFacts(), observability, trust_domain="vmesh.local",
                         idle_timeout=idle_timeout, request_timeout=request_timeout)
    socket_path = directory / "api.sock"
    await server.serve_unix(socket_path)
    try:
        yield LocalAdmin(server, bus, observability, socket_path)
    finally:
        await server.close()
