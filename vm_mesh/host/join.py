"""`vmesh join`: onboard a host's service in one command.

Judges the service file (and, when the host's mesh.toml has no `[discovery]`
table yet, that table: the backend is a host-wide choice), exchanges the
one-time token for the first certificate (the identity service is
authenticated by the anchor pin the token carries), writes those files only
then (a refused join leaves the host as it was; one whose files cannot be written
after the certificate was issued puts back what it found, `Snapshot`, and says the
token is spent), then starts the proxy:
`systemctl enable --now vmesh-proxy@<service>` where systemd runs, the proxy
in the foreground otherwise.
"""

import contextlib
import json
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vm_mesh import paths
from vm_mesh.config import ServiceConfig, load_mesh_config, parse_mesh_config
from vm_mesh.errors import UserError
from vm_mesh.files import write_file
from vm_mesh.schema import Invalid, dotted, load


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """What the operator asked for on the command line."""

    service: str
    app_port: int
    identity_url: str
    instance_id: str = ""
    advertise: str | None = None
    inbound: str | None = None
    outbound: str | None = None
    admin: str | None = None
    discovery: str | None = None  # None: whatever mesh.toml says, mdns when it says nothing
    consul_url: str | None = None


def _quote(value: str) -> str:
    """A TOML basic string: JSON's escapes (\\n, \\", \\uXXXX) are TOML's too."""
    return json.dumps(value, ensure_ascii=True)


def service_file(request: JoinRequest) -> str:
    """The TOML of the service file `join` writes; UserError when the values are invalid."""
    lines = [
        f"service = {_quote(request.service)}",
        f"app_port = {request.app_port}",
        f"identity_url = {_quote(request.identity_url)}",
    ]
    if request.instance_id:
        lines.append(f"instance_id = {_quote(request.instance_id)}")
    listen = [
        f"{key} = {_quote(value)}"
        for key, value in (("inbound", request.inbound), ("outbound", request.outbound),
                           ("admin", request.admin), ("advertise", request.advertise))
        if value
    ]
    if listen:
        lines += ["", "[listen]", *listen]
    text = "\n".join(lines) + "\n"
    try:
        load(ServiceConfig, tomllib.loads(text))
    except Invalid as exc:
        first = exc.problems[0]
        where = dotted(first.loc) or "service file"
        raise UserError(f"vmesh join: {where}: {first.message}") from None
    return text


def discovery_table(request: JoinRequest) -> str:
    """The `[discovery]` table `join` adds to mesh.toml."""
    lines = ["[discovery]", f"backend = {_quote(request.discovery or 'mdns')}"]
    if request.consul_url:
        lines.append(f"consul_url = {_quote(request.consul_url)}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class HostFiles:
    """The files `join` writes once the host has its certificate: (path, text) each."""

    writes: tuple[tuple[Path, str], ...]

    @property
    def paths(self) -> list[Path]:
        return [path for path, _ in self.writes]

    def write(self) -> list[Path]:
        """Write them; the paths written."""
        for path, text in self.writes:
            write_file(path, text.encode())
        return [path for path, _ in self.writes]


def planned_files(request: JoinRequest) -> HostFiles:
    """What `join` will write, judged before anything is: UserError, and nothing written, when
    the values are invalid or contradict the host's files."""
    writes = [(path, text) for path, text in (_mesh_discovery(request), _service_file(request))
              if text is not None]
    return HostFiles(tuple(writes))


def _service_file(request: JoinRequest) -> tuple[Path, str | None]:
    """The service file and its text (None: already there as asked); an existing different
    file is left alone and reported."""
    text = service_file(request)
    path = paths.service_config(request.service)
    if not path.exists():
        return path, text
    if path.read_text() != text:
        raise UserError(f"{path} exists with other settings; edit it or remove it, then join again")
    return path, None


def _mesh_discovery(request: JoinRequest) -> tuple[Path, str | None]:
    """mesh.toml and its text with the `[discovery]` table added (None: it has one).

    A host's proxies must all find the others the same way, so a `--discovery`
    that contradicts the table already there is refused rather than ignored.
    """
    path = paths.mesh_config()
    chosen = load_mesh_config(path).discovery
    if chosen is not None:
        asked_url = request.consul_url or chosen.consul_url
        asked = (request.discovery, asked_url)
        if request.discovery and asked != (chosen.backend, chosen.consul_url):
            where = f" at {chosen.consul_url}" if chosen.backend == "consul" else ""
            raise UserError(f"{path} already chooses discovery backend {chosen.backend!r}{where}; "
                            "edit it or drop --discovery/--consul-url")
        return path, None
    old = path.read_text() if path.exists() else ""
    text = (old.rstrip("\n") + "\n\n" if old.strip() else "") + discovery_table(request)
    parse_mesh_config(path, text)  # what join will write must load
    return path, text


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What some files held before a join (bytes and mode; None when absent) and the
    directories it found missing, to put the host back as it was when the join fails after
    its certificate was issued."""

    files: tuple[tuple[Path, tuple[bytes, int] | None], ...]
    missing_dirs: tuple[Path, ...]

    @classmethod
    def of(cls, paths: Iterable[Path]) -> "Snapshot":
        files = tuple((path, _held(path)) for path in paths)
        missing = {parent for path, _ in files for parent in path.parents
                   if not parent.exists()}
        return cls(files, tuple(sorted(missing, key=lambda p: len(p.parts), reverse=True)))

    def restore(self) -> None:
        """Put every file back (remove the new ones), then the directories made since, when
        empty; what cannot be undone (the cause of the failure, often) is left."""
        for path, held in self.files:
            with contextlib.suppress(OSError):
                if held is None:
                    path.unlink(missing_ok=True)
                else:
                    write_file(path, held[0], held[1])
        for directory in self.missing_dirs:  # the deepest first
            with contextlib.suppress(OSError):
                directory.rmdir()


def _held(path: Path) -> tuple[bytes, int] | None:
    """The bytes and permission bits of the file at `path`; None when there is none."""
    try:
        return path.read_bytes(), path.stat().st_mode & 0o7777
    except (FileNotFoundError, NotADirectoryError):
        return None
