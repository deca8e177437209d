"""Admin sources from discovery: every registered proxy, through mDNS, Consul or a static file.

Each registered instance carries its admin port (TXT key `admin` over mDNS,
service meta `admin` in Consul, `admin_port` in a static file); the console
reaches it at `address:admin` over mutual TLS. A proxy of this host is also
found through its socket, and `Sources` keeps that one (same instance id).

Which backends to ask: those given on the command line, plus by default the
ones this host's proxies use (the `[discovery]` table of each service file),
so that `vmesh console` on any host of a mesh sees the whole mesh.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from console.models.checks import ACL_TOKEN_REFUSED
from console.sources import Source, SourceProvider
from vm_mesh import defaults, paths
from vm_mesh.config import Discovery as DiscoverySettings
from vm_mesh.config import LoadedConfig
from vm_mesh.discovery.base import Instance

if TYPE_CHECKING:  # for the annotations only: both are imported where they are used
    import consul

    from vm_mesh.discovery.mdns import MdnsDiscovery

# mDNS answers trickle in: the first listing waits this long. A responder multicasts a record
# at most once a second (RFC 6762 6; python-zeroconf holds a repeat back a second rather than
# drop it), so where other queriers asked just before (proxies watching, another console), the
# answer to our first query comes a second late: the window covers that, and the answer to
# the browser's second query (sent after about a second)
BROWSE_WINDOW_S = 2.5
RESOLVE_WAIT_S = 3.0  # and then this long at most for the instances seen to resolve
CONSUL_TIMEOUT_S = 3.0  # each HTTP call to the agent


def admin_source(instance: Instance, origin: str) -> Source | None:
    """The admin API of a registered instance (None when it registered no admin port)."""
    if not instance.admin_port:
        return None
    host = f"[{instance.address}]" if ":" in instance.address else instance.address
    return Source(instance.instance_id, "tcp", f"{host}:{instance.admin_port}", origin,
                  instance.instance_id)


def _admin_sources(instances: Iterable[Instance], origin: str) -> list[Source]:
    return [s for s in (admin_source(i, origin) for i in instances) if s is not None]


class StaticFileAdmins:
    """Every instance with an `admin_port` in a static discovery file (`endpoints.toml`).

    The file is read on each call, so instances added to it show up; its
    parse errors are the provider's failure (reported, never fatal).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = f"static {path}"

    async def sources(self) -> list[Source]:
        from vm_mesh.discovery.static import parse_instances

        return _admin_sources(parse_instances(self.path.read_text()), "static")

    async def aclose(self) -> None:
        return None


class MdnsAdmins:
    """Every vmesh instance announced over mDNS (`_vmesh._tcp.local.`), of any service.

    The browser starts on the first call and keeps following announcements and
    goodbyes; the first call waits `browse_window_s` for the answers to arrive, and
    each call waits for the instances already announced to resolve.
    """

    def __init__(self, interfaces: Sequence[str] = (),
                 browse_window_s: float = BROWSE_WINDOW_S,
                 trust_domain: str | None = None) -> None:
        self.interfaces = tuple(interfaces)
        self.trust_domain = trust_domain  # other meshes' instances on the LAN are left out
        self.label = "mdns" + (f" on {','.join(self.interfaces)}" if self.interfaces else "")
        self._browse_window_s = browse_window_s
        self._mdns: MdnsDiscovery | None = None
        self._browsing_since = 0.0

    async def sources(self) -> list[Source]:
        if self._mdns is None:
            from vm_mesh.discovery.mdns import MdnsDiscovery

            self._mdns = MdnsDiscovery(list(self.interfaces) or None,
                                       trust_domain=self.trust_domain)
            self._mdns.browse()
            self._browsing_since = time.monotonic()
        left = self._browsing_since + self._browse_window_s - time.monotonic()
        if left > 0:
            await asyncio.sleep(left)
        await self._mdns.resolving(RESOLVE_WAIT_S)  # an instance seen is listed, not left out
        return _admin_sources(self._mdns.instances(), "mdns")

    async def aclose(self) -> None:
        if self._mdns is not None:
            await self._mdns.close()
            self._mdns = None


class ConsulAdmins:
    """Every instance in the Consul catalog, passing or not (a failing proxy is worth seeing);
    with a `trust_domain`, those of other meshes sharing the cluster are left out."""

    def __init__(self, settings: DiscoverySettings, trust_domain: str | None = None) -> None:
        from vm_mesh.discovery.factory import consul_settings

        self.settings = consul_settings(settings)
        self.trust_domain = trust_domain
        self.label = f"consul {settings.consul_url}"
        self._client: consul.Consul | None = None

    def _list(self) -> list[Instance]:
        from vm_mesh.discovery.consul import agent_client, instances_from_health

        if self._client is None:
            self._client = agent_client(self.settings, connections_timeout=CONSUL_TIMEOUT_S)
        _, services = self._client.catalog.services()
        found: list[Instance] = []
        for name in sorted(services or {}):
            _, entries = self._client.health.service(name)
            found += instances_from_health(entries, self.trust_domain)
        return found

    async def sources(self) -> list[Source]:
        import consul

        try:
            instances = await asyncio.to_thread(self._list)
        except consul.ACLPermissionDenied as exc:
            raise PermissionError(f"agent at {self.settings.host}:{self.settings.port} "
                                  f"{ACL_TOKEN_REFUSED} ({exc})") from None
        except OSError as exc:  # requests' errors are OSErrors, with very long messages
            text = str(exc).lower()
            why = next((w for w in ("refused", "timed out", "reset") if w in text), "failed")
            raise ConnectionError(f"agent at {self.settings.host}:{self.settings.port}: "
                                  f"connection {why}") from exc
        return _admin_sources(instances, "consul")

    async def aclose(self) -> None:
        return None


def _service_configs() -> list[LoadedConfig]:
    """This host's service files that load, by name (one that does not is skipped here:
    `vmesh proxy run` reports it)."""
    from vm_mesh.config import load_service_config
    from vm_mesh.errors import UserError

    services = paths.etc_dir() / "services"
    loaded = []
    for path in sorted(services.glob("*.toml")) if services.is_dir() else []:
        try:
            loaded.append(load_service_config(path))
        except UserError:
            continue
    return loaded


def host_discovery() -> list[DiscoverySettings]:
    """The discovery settings this host's proxies use (one per distinct backend).

    Each service file's proxy uses mesh.toml's `[discovery]`, else its own
    table, else the defaults (`vm_mesh.config.effective_discovery`). A host
    without service files uses mesh.toml's table when it has one. A service
    file that does not load is skipped here: `vmesh proxy run` reports it.
    """
    from vm_mesh.config import effective_discovery, load_mesh_config
    from vm_mesh.errors import UserError

    found: list[DiscoverySettings] = []
    services = paths.etc_dir() / "services"
    mesh_path = paths.mesh_config()
    try:
        mesh = load_mesh_config(mesh_path)
    except UserError:  # a mesh.toml that does not load: the proxies report it
        return []
    if services.is_dir() and any(services.glob("*.toml")):
        chosen = [effective_discovery(loaded, mesh, mesh_path).settings
                  for loaded in _service_configs()]
    else:
        chosen = [mesh.discovery] if mesh.discovery is not None else []
    for settings in chosen:
        if settings not in found:
            found.append(settings)
    return found


def host_trust_domain() -> str:
    """The trust domain of this host's proxies: their service files' (the first that loads),
    else mesh.toml's, else the default."""
    from vm_mesh.config import load_mesh_config
    from vm_mesh.errors import UserError

    configs = _service_configs()
    if configs:
        return configs[0].config.trust_domain
    try:
        return load_mesh_config().trust_domain
    except UserError:
        return defaults.TRUST_DOMAIN


def discovery_providers(settings: Iterable[DiscoverySettings] = (),
                        files: Iterable[Path] = (),
                        trust_domain: str | None = None) -> list[SourceProvider]:
    """One provider per distinct backend in `settings`, plus one per static file in `files`.

    A static backend without a file means the default endpoints file, which is
    only read when it exists (a host without one simply has none). Over mDNS and Consul
    only instances of `trust_domain` (and of vmesh versions that announce none) are listed.
    """
    providers: dict[str, SourceProvider] = {}
    static_files = list(files)
    for item in settings:
        if item.backend == "mdns":
            provider: SourceProvider = MdnsAdmins(item.interfaces, trust_domain=trust_domain)
        elif item.backend == "consul":
            provider = ConsulAdmins(item, trust_domain=trust_domain)
        else:
            default = paths.etc_dir() / "endpoints.toml"
            file = Path(item.file) if item.file else default
            if file != default or file.exists():
                static_files.append(file)
            continue
        providers.setdefault(provider.label, provider)
    for file in static_files:
        provider = StaticFileAdmins(file)
        providers.setdefault(provider.label, provider)
    return list(providers.values())
