"""Where vmesh keeps config, state and sockets; `VMESH_ROOT` prefixes every path."""

import os
from pathlib import Path

from vm_mesh.errors import UserError

# a unix socket's address (sun_path) holds 108 bytes on Linux, its terminating NUL among them
MAX_SOCKET_PATH_BYTES = 107


def root() -> Path:
    """The filesystem prefix: `/` on a host, a temporary directory in tests."""
    return Path(os.environ.get("VMESH_ROOT", "/"))


def etc_dir(under: Path | None = None) -> Path:
    """`/etc/vmesh` under VMESH_ROOT, or under `under` (another process's root)."""
    return (under or root()) / "etc" / "vmesh"


def mesh_config() -> Path:
    """The mesh-wide configuration file."""
    return etc_dir() / "mesh.toml"


def service_config(service: str, under: Path | None = None) -> Path:
    """The per-service configuration file read by `vmesh proxy run <service>` (under
    VMESH_ROOT, or under `under`)."""
    return etc_dir(under) / "services" / f"{service}.toml"


def service_names() -> list[str]:
    """The services this host has a service file for (`service_config`), sorted."""
    services = etc_dir() / "services"
    return sorted(p.stem for p in services.glob("*.toml")) if services.is_dir() else []


def gateway_config() -> Path:
    """The mesh gateway's configuration file (`vmesh gateway run`)."""
    return etc_dir() / "gateway.toml"


def policy_dir() -> Path:
    return etc_dir() / "policy.d"


def state_dir(name: str) -> Path:
    """Private state of one service (or `identity` for the identity service)."""
    return root() / "var" / "lib" / "vmesh" / name


def run_dir() -> Path:
    return root() / "run" / "vmesh"


def handover_status(service: str) -> Path:
    """The outcome of the last proxy handover of `vmesh run <service>` (JSON)."""
    return run_dir() / f"{service}.handover"


def admin_socket(service: str) -> Path:
    """The proxy's local admin API socket (no auth: protected by file permissions)."""
    return run_dir() / f"{service}.sock"


def check_socket_path(path: Path, remedy: str = "set a shorter VMESH_ROOT") -> Path:
    """`path`, if a unix socket can be bound or reached there; UserError ending in `remedy`
    if it is too long (a deep VMESH_ROOT), which the kernel would only call "path too long"."""
    length = len(os.fsencode(path))
    if length > MAX_SOCKET_PATH_BYTES:
        raise UserError(f"{path}: a unix socket's path holds at most {MAX_SOCKET_PATH_BYTES} "
                        f"bytes, this one has {length}; {remedy}")
    return path
