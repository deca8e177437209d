"""Open the discovery backend a `[discovery]` table (mesh.toml's, see vm_mesh.config) names.

    [discovery]
    backend = "consul"                    # mdns (default) | consul | static
    consul_url = "http://127.0.0.1:8500"  # consul: the local agent
    interfaces = ["198.18.0.2"]           # mdns: addresses of the interfaces to use
    file = "/etc/vmesh/endpoints.toml"    # static: the endpoints file
    datacenters = ["east", "west"]        # consul: the sites `api.east.mesh` may name
    gateways = ["east"]                   # consul: the sites reached through their gateways

mDNS and Consul are wrapped in `LastKnownGood`, so a backend that fails or has
not answered yet after a restart leaves the proxy routing on the saved set,
marked stale. A static file is its own last known good.
"""

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from vm_mesh import paths
from vm_mesh.config import Discovery as DiscoverySettings
from vm_mesh.discovery.base import Discovery
from vm_mesh.discovery.lastknown import LastKnownGood

if TYPE_CHECKING:
    from vm_mesh.discovery.consul import ConsulSettings


def consul_settings(
    settings: DiscoverySettings, check_host: str = "127.0.0.1"
) -> "ConsulSettings":
    """The Consul backend's settings from the table's consul_* keys; `check_host` is where the
    local agent reaches this proxy's admin port."""
    from vm_mesh.discovery.consul import ConsulSettings

    url = urlsplit(settings.consul_url)
    return ConsulSettings(
        host=url.hostname or "127.0.0.1",
        port=url.port or (443 if url.scheme == "https" else 8500),
        scheme=url.scheme,
        token=settings.consul_token,
        wait=settings.consul_wait,
        check_interval=settings.consul_check_interval,
        deregister_after=settings.consul_deregister_after,
        check_host=check_host,
        datacenters=settings.datacenters,
        gateways=settings.gateways,
    )


def open_backend(
    settings: DiscoverySettings, check_host: str = "127.0.0.1", trust_domain: str | None = None
) -> Discovery:
    """The bare backend `settings` names (no last-known-good wrapper); over mDNS and Consul,
    a `trust_domain` scopes registrations and watches to that mesh."""
    if settings.backend == "consul":
        from vm_mesh.discovery.consul import ConsulDiscovery

        return ConsulDiscovery(consul_settings(settings, check_host), trust_domain=trust_domain)
    if settings.backend == "mdns":
        from vm_mesh.discovery.mdns import MdnsDiscovery

        return MdnsDiscovery(list(settings.interfaces) or None, trust_domain=trust_domain)
    from vm_mesh.discovery.static import StaticDiscovery

    return StaticDiscovery(
        Path(settings.file) if settings.file else paths.etc_dir() / "endpoints.toml"
    )


def open_discovery(
    settings: DiscoverySettings,
    service: str,
    check_host: str = "127.0.0.1",
    trust_domain: str | None = None,
) -> Discovery:
    """The backend for the proxy of `service` in `trust_domain`; mdns and consul keep last
    known good sets."""
    backend = open_backend(settings, check_host, trust_domain)
    if settings.backend == "static":
        return backend
    return LastKnownGood(backend, paths.state_dir(service) / "discovery")
