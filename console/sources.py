"""Where the console's data comes from: the admin APIs it can reach.

A `Source` is one proxy's admin API: a local unix socket or a remote
`host:port` spoken to over mTLS. Providers list sources; `Sources` merges
them. Discovery backends (mDNS, Consul, static file) plug in later as one
more provider implementing `SourceProvider`, without touching the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from vm_mesh import defaults, paths

Kind = Literal["unix", "tcp"]


@dataclass(frozen=True, slots=True, order=True)
class Source:
    """One admin API endpoint. `name` is what the console shows for it."""

    name: str
    kind: Kind
    address: str  # socket path for unix, host:port for tcp
    origin: str = "local"  # local | flag | discovery backend name


class SourceProvider(Protocol):
    """Anything that can list admin sources (local sockets, flags, discovery)."""

    async def sources(self) -> list[Source]:
        """The sources known now; a provider that fails raises and the others still count."""
        ...


class LocalSockets:
    """The admin sockets of the proxies on this host: `paths.run_dir()/*.sock`."""

    def __init__(self, run_dir: Path | None = None) -> None:
        self._run_dir = run_dir

    async def sources(self) -> list[Source]:
        run_dir = self._run_dir or paths.run_dir()
        found = sorted(run_dir.glob("*.sock")) if run_dir.is_dir() else []
        return [Source(p.stem, "unix", str(p), "local") for p in found]


def parse_admin_address(text: str) -> Source:
    """A `--admin` value: `host:port`, `[v6]:port`, `host` (port 4191) or a socket path."""
    if text.startswith("/") or text.endswith(".sock"):
        return Source(Path(text).stem, "unix", text, "flag")
    host, port = text, defaults.ADMIN_PORT
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, text)
    if not host:
        raise ValueError(f"--admin {text!r}: expected host:port")
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Source(shown, "tcp", shown, "flag")


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"--admin {whole!r}: port must be a number from 1 to 65535")
    return int(text)


class StaticAdmins:
    """Sources given on the command line (`--admin host:port`, repeatable)."""

    def __init__(self, addresses: Iterable[str]) -> None:
        self._sources = [parse_admin_address(a) for a in addresses]

    async def sources(self) -> list[Source]:
        return list(self._sources)


class StaticFileAdmins:
    """Every instance with an `admin_port` in a static discovery file (`endpoints.toml`).

    The file is read on each call, so instances added to it show up; its
    parse errors are the provider's failure (reported, never fatal).
    """

    def __init__(self, path: Path) -> None:
        self._path = path

    async def sources(self) -> list[Source]:
        from vm_mesh.discovery.static import parse_instances

        found = []
        for instance in parse_instances(self._path.read_text()):
            if instance.admin_port:
                host = f"[{instance.address}]" if ":" in instance.address else instance.address
                found.append(Source(instance.instance_id, "tcp",
                                    f"{host}:{instance.admin_port}", "static"))
        return found


class Sources:
    """All providers merged; a failing provider is reported, never fatal."""

    def __init__(self, providers: Sequence[SourceProvider]) -> None:
        self._providers = list(providers)
        self.provider_errors: dict[str, str] = {}

    async def list(self) -> list[Source]:
        """Every source, deduplicated by address, in a stable order."""
        results = await asyncio.gather(
            *(p.sources() for p in self._providers), return_exceptions=True
        )
        seen: dict[tuple[str, str], Source] = {}
        self.provider_errors = {}
        for provider, result in zip(self._providers, results, strict=True):
            if isinstance(result, BaseException):
                self.provider_errors[type(provider).__name__] = f"{type(result).__name__}: {result}"
                continue
            for source in result:
                seen.setdefault((source.kind, source.address), source)
        return sorted(seen.values(), key=lambda s: (s.kind != "unix", s.name))


def default_sources(admin: Iterable[str] = (), local: bool = True,
                    discover: Iterable[Path] = ()) -> Sources:
    """Local sockets (unless `local` is False), every `--admin` address, and the
    instances of each static discovery file given (`--discover FILE`)."""
    providers: list[SourceProvider] = [LocalSockets()] if local else []
    providers.append(StaticAdmins(admin))
    providers += [StaticFileAdmins(path) for path in discover]
    return Sources(providers)
