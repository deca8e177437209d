"""Choose the discovery backend from the mesh-wide config, `/etc/vmesh/mesh.toml`:

    [discovery]
    backend = "mdns"              # mdns (default) | consul | static
    interfaces = ["198.18.0.2"]   # mdns: addresses of the interfaces to use (default: all)
    file = "/etc/vmesh/endpoints.toml"   # static: the endpoints file
    [discovery.consul]            # consul: the local agent
    host = "127.0.0.1"
    port = 8500
    wait = "30s"

Every backend is wrapped in `LastKnownGood`, so a backend that fails or has
not answered yet after a restart leaves the proxy routing on the saved set,
marked stale.
"""

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from vm_mesh import paths
from vm_mesh.discovery.base import Discovery
from vm_mesh.discovery.consul import ConsulSettings
from vm_mesh.discovery.lastknown import LastKnownGood
from vm_mesh.errors import UserError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConsulAgent(_Strict):
    host: str = "127.0.0.1"
    port: int = 8500
    scheme: Literal["http", "https"] = "http"
    token: str | None = None
    wait: str = "30s"
    check_interval: str = "5s"
    deregister_after: str = "1m"


class MeshDiscovery(_Strict):
    """The `[discovery]` table of mesh.toml."""

    backend: Literal["mdns", "consul", "static"] = "mdns"
    interfaces: tuple[str, ...] = ()
    file: str | None = None
    consul: ConsulAgent = ConsulAgent()


def load_mesh_discovery(path: Path | None = None) -> MeshDiscovery:
    """The `[discovery]` settings of mesh.toml; defaults when the file does not exist."""
    path = path or paths.mesh_config()
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return MeshDiscovery()
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: {exc} (fix the TOML syntax)") from None
    try:
        return MeshDiscovery.model_validate(raw.get("discovery", {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"discovery.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        )
        raise UserError(f"{path}: {problems}") from None


def open_backend(settings: MeshDiscovery) -> Discovery:
    """The bare backend `settings` names (no last-known-good wrapper)."""
    if settings.backend == "consul":
        from vm_mesh.discovery.consul import ConsulDiscovery

        agent = settings.consul
        return ConsulDiscovery(
            ConsulSettings(
                host=agent.host, port=agent.port, scheme=agent.scheme, token=agent.token,
                wait=agent.wait, check_interval=agent.check_interval,
                deregister_after=agent.deregister_after,
            )
        )
    if settings.backend == "static":
        from vm_mesh.discovery.static import StaticDiscovery

        if not settings.file:
            raise UserError(
                "mesh.toml: [discovery] backend = \"static\" needs file = \"<endpoints file>\""
            )
        return StaticDiscovery(Path(settings.file))
    from vm_mesh.discovery.mdns import MdnsDiscovery

    return MdnsDiscovery(list(settings.interfaces) or None)


def open_discovery(settings: MeshDiscovery, service: str) -> LastKnownGood:
    """The backend for the proxy of `service`, keeping its last known good sets in its state dir."""
    return LastKnownGood(open_backend(settings), paths.state_dir(service) / "discovery")
