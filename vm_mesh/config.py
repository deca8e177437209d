"""Configuration files: the mesh-wide `/etc/vmesh/mesh.toml` and one file per service,
`/etc/vmesh/services/<service>.toml`.

mesh.toml holds what every proxy of a host shares, above all the discovery
backend (all proxies of a mesh must find each other the same way):

    trust_domain = "vmesh.local"
    identity_url = "https://ca.example:8443"
    [discovery]
    backend = "mdns"              # mdns (default) | consul | static
    interfaces = ["198.18.0.2"]
    datacenters = ["east"]        # consul: the sites `api.east.mesh` may name (default: any)
    gateways = ["east"]           # consul: the sites reached through their mesh gateways

A service file:

    service = "api"
    app_port = 8080
    [listen]                      # all optional; defaults from DESIGN.md
    inbound = "0.0.0.0:4143"
    outbound = "127.0.0.1:4140"
    admin = "127.0.0.1:4191"
    advertise = "127.0.0.1"       # the address other hosts reach the inbound port on
    [max_connections]             # optional; defaults share the open-file limit out
    inbound = 16000
    outbound = 16000
    tcp = 1000                    # each [[tcp]] listener
    admin = 64                    # each of the admin port and the admin socket
    [[tcp]]                       # TCP upstreams: a local listener per upstream (HTTP detected)
    service = "db"
    listen = "127.0.0.1:15432"

A bad file is reported with the file, the line and the reason.
"""

import ipaddress
import re
import socket
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from identity.url import check_identity_url
from vm_mesh import defaults, paths
from vm_mesh.discovery import sites
from vm_mesh.durations import parse_duration
from vm_mesh.errors import UserError
from vm_mesh.schema import Check, Invalid, Parse, Range, load

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _address(value: str) -> str:
    """A listener's `address:port`: an IP address, since a name may stand for several (and
    an upgrade hands each listener to the next proxy as the one socket it is bound to)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(
            f"{value!r}: a listener binds an IP address (like 127.0.0.1 or [::1]), not a name"
        ) from None
    return value


def _seconds(value: Any) -> float:
    """A timeout as a duration (`"2s"`, `"500ms"`) or a number of seconds."""
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"a timeout is a duration like 2s or a number of seconds, not {value!r}")


def _consul_url(value: str) -> str:
    url = urlsplit(value)
    if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/"):
        raise ValueError(f"{value!r} is not an agent address like http://127.0.0.1:8500")
    return value


def _between(low: str, high: str, why: str) -> Callable[[str], str]:
    """A check that keeps a duration string between the durations `low` and `high` (`why`
    says whose bounds they are)."""
    bounds = parse_duration(low), parse_duration(high)

    def check(value: str) -> str:
        if not bounds[0] <= parse_duration(value) <= bounds[1]:
            raise ValueError(f"{value} is not between {low} and {high} ({why})")
        return value

    return check


# Consul holds a blocking query 10 minutes at most; a wait of 0 is its default of 5 minutes,
# which outlasts the client's read timeout (the wait plus 30 s)
ConsulWait = Annotated[str, Check(_between("1ms", "10m", "Consul holds a query 10m at most"))]
ConsulInterval = Annotated[str, Check(_between("1ms", "24h", "a check's interval"))]
ConsulDeregisterAfter = Annotated[str, Check(_between("1m", "720h", "Consul's minimum is 1m"))]


def _http_url(value: str) -> str:
    url = urlsplit(value)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"{value!r} is not a URL like http://127.0.0.1:4318/v1/traces")
    return value


def _service_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a service name (lowercase letters, digits, '-')")
    return value


def _destination(value: str) -> str:
    """A `[[tcp]]` upstream: a service of this site (`db`), or another site's (`db.east`)."""
    return sites.check_destination(value) if "." in value else _service_name(value)


Address = Annotated[str, Check(_address)]
Datacenter = Annotated[str, Check(sites.check_datacenter)]
Seconds = Annotated[float, Parse(_seconds)]
# the identity client's own rule, so a URL it would refuse at the first renewal fails at load
IdentityUrl = Annotated[str, Check(check_identity_url)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Listen:
    inbound: Address = f"0.0.0.0:{defaults.INBOUND_PORT}"
    outbound: Address = f"127.0.0.1:{defaults.OUTBOUND_PORT}"
    admin: Address = f"127.0.0.1:{defaults.ADMIN_PORT}"
    advertise: str = "127.0.0.1"


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpUpstream:
    service: Annotated[str, Check(_destination)]
    listen: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    connect: Seconds = 2.0
    header: Seconds = 10.0
    idle: Seconds = 60.0
    # an idle connection to the app is used again only within this: under the keep-alive
    # timeouts apps commonly have (Node.js, uvicorn, Apache: 5 s), so that an app never
    # closes a connection just as a request goes out on it
    app_idle: Seconds = 4.0
    drain: Seconds = 30.0


Cap = Annotated[int, Range(ge=1)]


@dataclass(frozen=True, slots=True, kw_only=True)
class MaxConnections:
    """The `[max_connections]` table: the most connections each listener holds at once (at
    its cap it stops accepting until one closes); one left out is a share of the open-file
    limit (`proxy.listener_limits.listener_caps`)."""

    inbound: Cap | None = None
    outbound: Cap | None = None
    tcp: Cap | None = None  # each [[tcp]] listener
    admin: Cap | None = None  # each of the admin port and the admin socket


@dataclass(frozen=True, slots=True, kw_only=True)
class Discovery:
    """The `[discovery]` table of mesh.toml: which backend finds the other services.

    A service file may carry the same table (older files, tests that mix
    backends under one root); it counts only when mesh.toml has none. mdns and
    consul are wrapped in last-known-good (saved sets under the service's state
    dir, served stale when the backend fails).
    """

    backend: Literal["static", "mdns", "consul"] = "mdns"
    file: str | None = None  # static: the endpoints file
    interfaces: tuple[str, ...] = ()  # mdns: addresses of the interfaces to use (default: all)
    consul_url: Annotated[str, Check(_consul_url)] = "http://127.0.0.1:8500"  # the local agent
    consul_token: str | None = None
    consul_wait: ConsulWait = "30s"  # consul: how long one blocking query may last
    consul_check_interval: ConsulInterval = "5s"
    consul_deregister_after: ConsulDeregisterAfter = "1m"  # Consul's minimum
    # consul: the datacenters `<service>.<datacenter>.mesh` may name (None: any the agent knows)
    datacenters: tuple[Datacenter, ...] | None = None
    # consul: the datacenters reached through their mesh gateways (`vmesh gateway run` there),
    # whose networks this one does not route to
    gateways: tuple[Datacenter, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    """Everything `vmesh proxy run <service>` needs to know."""

    service: Annotated[str, Check(_service_name)]
    app_port: Annotated[int, Range(ge=1, le=65535)]
    app_address: str = "127.0.0.1"
    instance_id: str = ""
    trust_domain: str = defaults.TRUST_DOMAIN
    version: str = ""
    zone: str = ""
    weight: Annotated[int, Range(ge=0, le=10000)] = 100
    identity_url: IdentityUrl | None = None
    access_log: bool = False
    # services this proxy routes to at once; a request for one more is refused (503) until
    # the watch of an unused one is let go: an app that names a new Host in every request
    # must not make the proxy watch discovery and compile policy for each
    max_destinations: Annotated[int, Range(ge=1)] = 1024
    listen: Listen = Listen()
    timeouts: Timeouts = Timeouts()
    max_connections: MaxConnections = MaxConnections()
    discovery: Discovery | None = None  # see `effective_discovery`: mesh.toml wins
    tcp: tuple[TcpUpstream, ...] = ()

    @property
    def instance(self) -> str:
        return self.instance_id or f"{self.service}-{socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated config and the file it came from."""

    path: Path
    config: ServiceConfig
    raw: dict[str, Any] = field(default_factory=dict)


_TABLE_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]*?)\s*\]\]?")


def _table_of(line: str) -> str | None:
    """The name of the table (or array of tables) whose header `line` is; None for another."""
    header = _TABLE_HEADER.match(line)
    return re.sub(r"\s*\.\s*", ".", header.group(1)) if header else None


def _line_of(text: str, location: tuple[Any, ...]) -> int:
    """Best line for an error at `location`: the line that sets its last key within its
    table (the n-th of an array of tables: `tcp[1].service`), else its table's header, else
    the first line that sets a key of that name, else 1."""
    lines = text.splitlines()
    headers = [n for n, line in enumerate(lines) if _table_of(line) is not None]
    first, last, found = 0, (headers[0] if headers else len(lines)), 0
    names: list[str] = []
    for position, part in enumerate(location):
        if not isinstance(part, str):
            continue
        names.append(part)
        following = location[position + 1] if position + 1 < len(location) else None
        nth = following if isinstance(following, int) else 0
        tables = [n for n in headers if _table_of(lines[n]) == ".".join(names)]
        if len(tables) > nth:
            first, found = tables[nth], tables[nth] + 1
            last = next((n for n in headers if n > first), len(lines))
            continue
        key = re.compile(rf"^\s*{re.escape(part)}\s*=")
        found = next((n + 1 for n in range(first, last) if key.match(lines[n])), found)
        break
    return found or _first_setting(lines, location)


def _first_setting(lines: list[str], location: tuple[Any, ...]) -> int:
    """The first line that sets one of `location`'s keys (the last first), else 1."""
    keys = [str(part) for part in location if isinstance(part, str)]
    for key in reversed(keys):
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=|^\s*\[+\s*{re.escape(key)}\s*\]+")
        for number, line in enumerate(lines, start=1):
            if pattern.search(line):
                return number
    return 1


M = TypeVar("M")


def _parse(path: Path, text: str, model: type[M]) -> tuple[M, dict[str, Any]]:
    """Parse TOML `text` of `path` into `model`; UserError as `file:line: reason` lines."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = match.group(1) if match else "1"
        raise UserError(f"{path}:{line}: {exc}") from None
    try:
        return load(model, raw), raw
    except Invalid as exc:
        # a missing key has no line of its own: its table's is the place to add it
        problems = [
            f"{path}:{_line_of(text, p.loc[:-1] if p.kind == 'missing' else p.loc)}: {p}"
            for p in exc.problems
        ]
        raise UserError("\n".join(problems)) from None


def _read_text(path: Path) -> str | None:
    """The file's text, None if there is no such file; a file that cannot be read or is not
    UTF-8 is a UserError naming it (and the line of the first bad byte)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x})"
                        ) from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read: {exc.strerror or exc}") from None


def check_config_file(path: Path, model: type[M]) -> M:
    """Read and validate `path` as a `model` file (any name: a new version before it is put in
    place); UserError as `file:line: reason` lines when it is missing or bad."""
    text = _read_text(path)
    if text is None:
        raise UserError(f"{path}: no such file")
    return _parse(path, text, model)[0]


def load_service_config(path: Path) -> LoadedConfig:
    """Read and validate a service file; UserError as `file:line: reason` when it is bad."""
    text = _read_text(path)
    if text is None:
        raise UserError(f"{path}: no such service file (create it, or run `vmesh join`)")
    config, raw = _parse(path, text, ServiceConfig)
    return LoadedConfig(path, config, raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tracing:
    """mesh.toml's `[tracing]`: where the proxies send the spans of sampled traces."""

    # OTLP/HTTP traces endpoint of an OpenTelemetry collector or Jaeger (port 4318)
    otlp_endpoint: Annotated[str, Check(_http_url)]


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshConfig:
    """`/etc/vmesh/mesh.toml`: what every proxy of the host shares."""

    trust_domain: str = defaults.TRUST_DOMAIN
    identity_url: IdentityUrl | None = None
    discovery: Discovery | None = None  # None: the file has no [discovery] table
    tracing: Tracing | None = None  # None: no spans are exported


def load_mesh_config(path: Path | None = None) -> MeshConfig:
    """Read mesh.toml (default: its place under VMESH_ROOT); a missing file means defaults."""
    path = path or paths.mesh_config()
    text = _read_text(path)
    return MeshConfig() if text is None else parse_mesh_config(path, text)


def parse_mesh_config(path: Path, text: str) -> MeshConfig:
    """mesh.toml's `text` (from `path`, or to be written there); UserError when invalid."""
    return _parse(path, text, MeshConfig)[0]


def host_and_port(value: str, default_port: int) -> tuple[str, int]:
    """(`host`, `port`) of `host:port`, `host`, `[v6]:port`, `[v6]` or a bare IPv6 address;
    `default_port` when it names none. ValueError when the port is no port."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":") if rest.startswith(":") or not rest else "?"
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        host, port = value, ""
    if not host or (port and (not port.isdigit() or not 0 < int(port) <= 65535)):
        raise ValueError(f"{value!r} is not host or host:port (like 198.18.0.5:4180)")
    return host, int(port) if port else default_port


def _reachable(value: str) -> str:
    host_and_port(value, 0)
    return value


Reachable = Annotated[str, Check(_reachable)]


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayMaxConnections:
    """gateway.toml's `[max_connections]`: the most connections each of the gateway's
    listeners holds at once (at its cap it stops accepting until one closes); one left out is
    a share of the open-file limit (`proxy.listener_limits.gateway_caps`)."""

    gateway: Cap | None = None  # the listener other sites connect to (`listen`)
    admin: Cap | None = None  # each of the admin socket and the admin port


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    """`/etc/vmesh/gateway.toml`: the mesh gateway of this host's site (`vmesh gateway run`).

        datacenter = "east"                 # the site whose services it carries
        listen = "0.0.0.0:4180"
        wan_address = "198.18.0.5"          # where other sites reach it (port: listen's)
        lan_address = "10.0.0.5"            # where its own site reaches it (default: listen's)
        admin_port = 4191                   # optional: the admin API over mTLS on listen's
                                            # address (Prometheus); needs a leaf of its own
        [max_connections]                   # optional; defaults share the open-file limit out
        gateway = 16000                     # the listener other sites connect to
        admin = 64                          # the admin socket
    """

    datacenter: Datacenter
    wan_address: Reachable
    listen: Address = f"0.0.0.0:{defaults.GATEWAY_PORT}"
    lan_address: Reachable | None = None
    instance_id: str = ""
    # seconds a client has to send its whole ClientHello
    hello_timeout: Seconds = 5.0
    connect_timeout: Seconds = 2.0
    drain: Seconds = 30.0  # how long open connections may go on after SIGTERM
    # a refusal's reason is logged once in this long; the repeats are counted, then told
    refusal_log_interval: Seconds = 10.0
    max_connections: GatewayMaxConnections = GatewayMaxConnections()
    # the admin API over mTLS, as a proxy's port 4191 (0: any free port); None: the admin
    # socket only, and the gateway holds no key at all
    admin_port: Annotated[int, Range(ge=0, le=65535)] | None = None


def load_gateway_config(path: Path | None = None) -> GatewayConfig:
    """Read gateway.toml (default: its place under VMESH_ROOT); UserError when it is missing
    or bad."""
    path = path or paths.gateway_config()
    text = _read_text(path)
    if text is None:
        raise UserError(f"{path}: no such file (a gateway needs at least `datacenter` and "
                        "`wan_address`)")
    return _parse(path, text, GatewayConfig)[0]


@dataclass(frozen=True, slots=True)
class DiscoveryChoice:
    """The discovery settings a proxy uses and the file they came from (None: defaults)."""

    settings: Discovery
    file: Path | None
    ignored: Path | None = None  # a service file whose [discovery] table mesh.toml overrides


def effective_discovery(loaded: LoadedConfig, mesh: MeshConfig, mesh_path: Path) -> DiscoveryChoice:
    """mesh.toml's `[discovery]` if it has one (`mesh`, read from `mesh_path`), else the
    service file's, else the defaults."""
    own = loaded.config.discovery
    if mesh.discovery is not None:
        ignored = loaded.path if own is not None and own != mesh.discovery else None
        return DiscoveryChoice(mesh.discovery, mesh_path, ignored)
    if own is not None:
        return DiscoveryChoice(own, loaded.path)
    return DiscoveryChoice(Discovery(), None)


def load_service(service: str) -> LoadedConfig:
    """The config of `service` from its standard place under VMESH_ROOT."""
    return load_service_config(paths.service_config(service))
