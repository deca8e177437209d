"""Where the console's data comes from: the admin APIs it can reach.

A `Source` is one proxy's admin API: a local unix socket or a remote
`host:port` spoken to over mTLS. Providers list sources: this host's sockets,
`--admin` flags, and the discovery backends (`console.discovered`: mDNS,
Consul, static file). `Sources` asks each provider under its own deadline and
merges the answers; a proxy found both ways is kept once, over its socket.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from vm_mesh import defaults, paths

Kind = Literal["unix", "tcp"]

PROVIDER_TIMEOUT_S = 5.0  # one provider's answer; a slower one is reported, not waited for
IDENTIFY_TIMEOUT_S = 1.0  # a local socket's instance id


@dataclass(frozen=True, slots=True, order=True)
class Source:
    """One admin API endpoint. `name` is what the console shows for it."""

    name: str
    kind: Kind
    address: str  # socket path for unix, host:port for tcp
    origin: str = "local"  # local | flag | discovery backend name
    instance: str | None = None  # the proxy's instance id, when known


class SourceProvider(Protocol):
    """Anything that can list admin sources (local sockets, flags, discovery)."""

    label: str  # how the console names the provider, e.g. "consul http://127.0.0.1:8500"

    async def sources(self) -> list[Source]:
        """The sources known now; a provider that fails raises and the others still count."""
        ...

    async def aclose(self) -> None:
        """Release what the provider holds (an mDNS browser)."""
        ...


class LocalSockets:
    """The admin sockets of the proxies on this host: `paths.run_dir()/*.sock`.

    Each socket is asked once for its proxy's instance id (`/v1/stats`), so that
    the same proxy found through discovery is recognised and read over the
    socket; a socket that does not answer stays listed, without an id.
    """

    label = "local sockets"

    def __init__(self, run_dir: Path | None = None) -> None:
        self._run_dir = run_dir
        self._instances: dict[tuple[str, int, int], str] = {}  # (path, inode, mtime) -> id

    async def sources(self) -> list[Source]:
        run_dir = self._run_dir or paths.run_dir()
        found = [(p, p.stat()) for p in sorted(run_dir.glob("*.sock"))] if run_dir.is_dir() else []
        ids = await asyncio.gather(*(self._instance_of(p, (str(p), st.st_ino, st.st_mtime_ns))
                                     for p, st in found))
        return [Source(p.stem, "unix", str(p), "local", i)
                for (p, _), i in zip(found, ids, strict=True)]

    async def _instance_of(self, path: Path, key: tuple[str, int, int]) -> str | None:
        if key not in self._instances:
            from console.client import AdminClient, AdminError

            source = Source(path.stem, "unix", str(path))
            try:
                async with AdminClient(source) as client:
                    stats = await asyncio.wait_for(client.get_json("/v1/stats"),
                                                   IDENTIFY_TIMEOUT_S)
            except (AdminError, TimeoutError):
                return None  # asked again next time
            instance = stats.get("instance") if isinstance(stats, dict) else None
            if not instance:
                return None
            self._instances[key] = str(instance)
        return self._instances[key]

    async def aclose(self) -> None:
        return None


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

    label = "--admin"

    def __init__(self, addresses: Iterable[str]) -> None:
        self._sources = [parse_admin_address(a) for a in addresses]

    async def sources(self) -> list[Source]:
        return list(self._sources)

    async def aclose(self) -> None:
        return None


class Sources:
    """All providers, each asked under its own deadline; a failing one is reported, never fatal.

    The console refreshes providers one by one in their own workers
    (`refresh`); the CLI asks all at once (`list`). `merged()` is the union of
    the last answers.
    """

    def __init__(self, providers: Sequence[SourceProvider],
                 timeout_s: float = PROVIDER_TIMEOUT_S) -> None:
        self.providers = list(providers)
        self.timeout_s = timeout_s
        self.answers: dict[str, list[Source]] = {}  # label -> its last answer
        self.provider_errors: dict[str, str] = {}  # label -> why it gave nothing

    async def refresh(self, provider: SourceProvider) -> None:
        """Ask one provider; on failure keep what it said last and record why."""
        try:
            found = await asyncio.wait_for(provider.sources(), self.timeout_s)
        except TimeoutError:
            self.provider_errors[provider.label] = f"no answer within {self.timeout_s:g}s"
        except Exception as exc:  # any failure of a backend is shown, never raised
            self.provider_errors[provider.label] = f"{type(exc).__name__}: {exc}"
        else:
            self.answers[provider.label] = found
            self.provider_errors.pop(provider.label, None)

    def all_asked(self) -> bool:
        """Whether every provider has answered, or failed, at least once."""
        return all(p.label in self.answers or p.label in self.provider_errors
                   for p in self.providers)

    async def list(self) -> list[Source]:
        """Every source from every provider now, deduplicated, in a stable order."""
        await asyncio.gather(*(self.refresh(p) for p in self.providers))
        return self.merged()

    def merged(self) -> builtins.list[Source]:  # `list` here is the method above
        """The last answers merged: one source per address and per instance, sockets first."""
        everything = [s for p in self.providers for s in self.answers.get(p.label, ())]
        everything.sort(key=lambda s: s.kind != "unix")  # a socket wins over the same proxy's TCP
        by_address: dict[tuple[str, str], Source] = {}
        instances: set[str] = set()
        names: set[str] = set()
        for source in everything:
            if (source.kind, source.address) in by_address or source.name in names:
                continue
            if source.instance is not None:
                if source.instance in instances:
                    continue
                instances.add(source.instance)
            by_address[(source.kind, source.address)] = source
            names.add(source.name)
        return sorted(by_address.values(), key=lambda s: (s.kind != "unix", s.name))

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()


def default_sources(admin: Iterable[str] = (), local: bool = True,
                    discovery: Iterable[SourceProvider] = ()) -> Sources:
    """Local sockets (unless `local` is False), every `--admin` address, and `discovery`
    providers (see `console.discovered.discovery_providers`)."""
    providers: list[SourceProvider] = [LocalSockets()] if local else []
    providers.append(StaticAdmins(admin))
    providers += discovery
    return Sources(providers)
