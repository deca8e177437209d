"""An admin server run alone, on a unix socket in the test's event loop, with what a proxy
would tell it fixed."""

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from identity import pki
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


def write_identity(
    directory: Path,
    issuer: pki.CertifiedKey,
    anchor: pki.CertifiedKey,
    spiffe_id: str,
    trust_domain: str = "vmesh.local",
) -> Path:
    """`directory` with a key, a leaf of `spiffe_id` from `issuer`, and `anchor` as bundle."""
    key = pki.generate_key()
    leaf = pki.issue_leaf(
        issuer,
        key.public_key(),
        spiffe_id=spiffe_id,
        common_name=spiffe_id.rsplit("/", 1)[-1],
        trust_domain=trust_domain,
    )
    pki.write_private(directory / "key.pem", pki.key_pem(key))
    pki.write_file(directory / "cert.pem", pki.cert_pem(leaf, issuer.cert))
    pki.write_file(directory / "bundle.pem", pki.cert_pem(anchor.cert))
    return directory


def client_context(directory: Path, bundle: Path) -> ssl.SSLContext:
    """A TLS client presenting `directory`'s leaf and trusting `bundle`."""
    context = ssl.create_default_context(cafile=str(bundle))
    context.check_hostname = False  # mesh leaves name a SPIFFE ID, not a host
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


async def eventually(condition: Callable[[], bool], what: str, deadline_s: float = 10) -> None:
    """Wait until `condition()` holds; AssertionError naming `what` after `deadline_s`."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"{what} did not happen within {deadline_s}s")
        await asyncio.sleep(0.02)
