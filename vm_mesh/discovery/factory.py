"""Open the discovery backend a service file's `[discovery]` table names.

    [discovery]
    backend = "consul"                    # static (default) | mdns | consul
    consul_url = "http://127.0.0.1:8500"  # consul: the local agent
    interfaces = ["198.18.0.2"]           # mdns: addresses of the interfaces to use
    file = "/etc/vmesh/endpoints.toml"    # static: the endpoints file

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


def consul_settings(settings: DiscoverySettings) -> "ConsulSettings":
    """The Consul backend's settings from the service file's consul_* keys."""
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
    )


def open_backend(settings: DiscoverySettings) -> Discovery:
    """The bare backend `settings` names (no last-known-good wrapper)."""
    if settings.backend == "consul":
        from vm_mesh.discovery.consul import ConsulDiscovery

        return ConsulDiscovery(consul_settings(settings))
    if settings.backend == "mdns":
        from vm_mesh.discovery.mdns import MdnsDiscovery

        return MdnsDiscovery(list(settings.interfaces) or None)
    from vm_mesh.discovery.static import StaticDiscovery

    return StaticDiscovery(
        Path(settings.file) if settings.file else paths.etc_dir() / "endpoints.toml"
    )


def open_discovery(settings: DiscoverySettings, service: str) -> Discovery:
    """The backend for the proxy of `service`; mdns and consul keep last known good sets."""
    backend = open_backend(settings)
    if settings.backend == "static":
        return backend
    return LastKnownGood(backend, paths.state_dir(service) / "discovery")
