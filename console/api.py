"""Typed records of what the admin API returns (DESIGN.md "Admin API").

The one place that knows the JSON shapes: every other console module works on
these records. Parsing is tolerant of missing optional fields (a proxy of an
older version still shows up) but never invents data: what is absent stays None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vm_mesh.redaction import redacted_target


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from epoch seconds or an ISO 8601 string; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    text = str(value).replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _number(data: dict[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _sketch(value: Any) -> tuple[float, ...]:
    """A row's latency sketch; empty when absent or not a list of numbers (an older proxy)."""
    if not isinstance(value, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        return ()
    return tuple(float(v) for v in value)


def _text(data: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = data.get(key)
        if value is not None and value != "":
            return str(value)
    return None


def short_identity(spiffe_id: str | None) -> str | None:
    """`spiffe://td/svc/api` -> `api`; operators and hosts keep their kind (`operator/ann`)."""
    if not spiffe_id:
        return None
    _, _, path = spiffe_id.removeprefix("spiffe://").partition("/")
    kind, _, name = path.partition("/")
    if not name:
        return spiffe_id
    return name if kind == "svc" else f"{kind}/{name}"


def address_host(address: str | None) -> str | None:
    """`10.0.0.5:40001` -> `10.0.0.5`, `[::1]:40001` -> `::1`; None stays None.

    A client without a mesh identity is known by its host: its ephemeral
    source port differs with every connection.
    """
    if not address:
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return address
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def common_name(subject: str) -> str:
    """`CN=vmesh issuer,O=vmesh.local` -> `vmesh issuer`; the subject itself without a CN."""
    for part in subject.split(","):
        key, sep, value = part.strip().partition("=")
        if sep and key.upper() == "CN":
            return value
    return subject


# --- tap ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TapEvent:
    """One request seen by one proxy; `proxy` names the admin source it came from."""

    proxy: str
    ts: float
    id: str
    direction: str
    src_id: str | None
    src_addr: str | None
    dst_service: str | None
    dst_instance: str | None
    dst_addr: str | None
    dst_id: str | None
    tls: bool
    method: str | None
    authority: str | None
    path: str | None
    route: str | None
    status: int | None
    latency_ms: float
    bytes_in: int
    bytes_out: int
    retries: int
    policy_decision: str | None
    policy_rule: str | None
    error: str | None
    trace_id: str | None

    @classmethod
    def from_json(cls, proxy: str, data: dict[str, Any]) -> TapEvent:
        src = data.get("src") or {}
        dst = data.get("dst") or {}
        policy = data.get("policy") or {}
        status = data.get("status")
        path = data.get("path")  # its query's values redacted here too, as a proxy of an
        # earlier release sends them
        return cls(
            proxy=proxy,
            ts=float(data.get("ts") or 0.0),
            id=str(data.get("id", "")),
            direction=str(data.get("direction") or "?"),
            src_id=src.get("id"),
            src_addr=src.get("addr"),
            dst_service=dst.get("service"),
            dst_instance=dst.get("instance"),
            dst_addr=dst.get("addr"),
            dst_id=dst.get("id"),
            tls=bool(data.get("tls")),
            method=data.get("method"),
            authority=data.get("authority"),
            path=redacted_target(path) if isinstance(path, str) else None,
            route=data.get("route"),
            status=int(status) if isinstance(status, int) else None,
            latency_ms=float(data.get("latency_ms") or 0.0),
            bytes_in=int(data.get("bytes_in") or 0),
            bytes_out=int(data.get("bytes_out") or 0),
            retries=int(data.get("retries") or 0),
            policy_decision=policy.get("decision"),
            policy_rule=policy.get("rule"),
            error=data.get("error"),
            trace_id=data.get("trace_id"),
        )

    @property
    def ok(self) -> bool:
        """Success as linkerd counts it: a response below 500 and no proxy error."""
        return self.error is None and self.status is not None and self.status < 500

    @property
    def source_name(self) -> str:
        """Who sent the request: its identity's short name, else its host."""
        return short_identity(self.src_id) or address_host(self.src_addr) or "-"

    @property
    def client_name(self) -> str:
        """The client: the tapped proxy's own service for its outbound requests."""
        if self.direction == "outbound" and not self.src_id:
            return self.proxy
        return self.source_name

    @property
    def destination_name(self) -> str:
        """Where it went: the destination service, else its identity or address."""
        return self.dst_service or short_identity(self.dst_id) or self.dst_addr or "-"

    def fields(self) -> list[tuple[str, str]]:
        """Every field, in the order of DESIGN.md, as (label, text) for a detail pane."""
        def show(value: Any) -> str:
            return "-" if value is None or value == "" else str(value)

        return [
            ("proxy", self.proxy),
            ("id", self.id),
            ("time", datetime.fromtimestamp(self.ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]),
            ("direction", self.direction),
            ("src.id", show(self.src_id)),
            ("src.addr", show(self.src_addr)),
            ("dst.service", show(self.dst_service)),
            ("dst.instance", show(self.dst_instance)),
            ("dst.addr", show(self.dst_addr)),
            ("dst.id", show(self.dst_id)),
            ("tls", "yes" if self.tls else "no"),
            ("method", show(self.method)),
            ("authority", show(self.authority)),
            ("path", show(self.path)),
            ("route", show(self.route)),
            ("status", show(self.status)),
            ("latency", f"{self.latency_ms:.3f} ms"),
            ("bytes in", str(self.bytes_in)),
            ("bytes out", str(self.bytes_out)),
            ("retries", str(self.retries)),
            ("policy.decision", show(self.policy_decision)),
            ("policy.rule", show(self.policy_rule)),
            ("error", show(self.error)),
            ("trace id", show(self.trace_id)),
        ]


# --- stats -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteStats:
    """Golden metrics of one route or upstream over the stats window."""

    direction: str
    service: str
    route: str
    rps: float
    success_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    in_flight: int
    requests: int
    latency_sketch_ms: tuple[float, ...] = ()  # equal shares of the requests, see proxy.stats

    @classmethod
    def from_json(cls, data: dict[str, Any], default_direction: str) -> RouteStats:
        raw_latency = data.get("latency_ms")
        latency: dict[str, Any] = raw_latency if isinstance(raw_latency, dict) else {}
        rps = _number(data, "rps") or 0.0
        return cls(
            direction=_text(data, "direction") or default_direction,
            service=_text(data, "service", "dst_service", "authority", "upstream") or "-",
            route=_text(data, "route") or "default",
            rps=rps,
            success_rate=_number(data, "success_rate", "success"),
            p50_ms=_number(data, "p50_ms", "latency_p50_ms") or _number(latency, "p50"),
            p95_ms=_number(data, "p95_ms", "latency_p95_ms") or _number(latency, "p95"),
            p99_ms=_number(data, "p99_ms", "latency_p99_ms") or _number(latency, "p99"),
            in_flight=int(_number(data, "in_flight") or 0),
            requests=int(_number(data, "requests", "count", "total") or 0),
            latency_sketch_ms=_sketch(data.get("latency_sketch_ms")),
        )


@dataclass(frozen=True, slots=True)
class ListenerLoad:
    """One listener of a proxy (`inbound`, `outbound`, `tcp:<service>`, `admin`,
    `admin-socket`): its connections open now against its cap, and whether it is at it."""

    name: str
    open: int
    max: int
    saturated: bool

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> ListenerLoad:
        return cls(name=name, open=int(_number(data, "open") or 0),
                   max=int(_number(data, "max") or 0), saturated=data.get("saturated") is True)


def _listeners(value: Any) -> tuple[ListenerLoad, ...]:
    """The listeners of `/v1/stats`; none from a proxy of a version without caps."""
    if not isinstance(value, dict):
        return ()
    return tuple(ListenerLoad.from_json(str(name), data)
                 for name, data in sorted(value.items()) if isinstance(data, dict))


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """`GET /v1/stats`: who the proxy is, its routes (inbound) and upstreams (outbound), and
    its listeners' connections against their caps."""

    service: str | None
    instance: str | None
    version: str | None
    window_s: float | None
    tcp_open: int | None
    routes: tuple[RouteStats, ...]
    listeners: tuple[ListenerLoad, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProxyStats:
        routes = [RouteStats.from_json(r, "inbound") for r in data.get("routes") or ()]
        routes += [RouteStats.from_json(u, "outbound") for u in data.get("upstreams") or ()]
        tcp = _number(data, "tcp_open", "tcp_connections", "tcp_conn")
        return cls(
            service=_text(data, "service"),
            instance=_text(data, "instance", "instance_id"),
            version=_text(data, "version"),
            window_s=_number(data, "window_s", "window"),
            tcp_open=int(tcp) if tcp is not None else None,
            routes=tuple(routes),
            listeners=_listeners(data.get("listeners")),
        )

    @property
    def inbound(self) -> tuple[RouteStats, ...]:
        return tuple(r for r in self.routes if r.direction == "inbound")


# --- certificates ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertInfo:
    """One certificate of a proxy's chain or trust bundle."""

    kind: str  # leaf | issuer | anchor
    subject: str
    san: tuple[str, ...]  # URI SANs: a leaf's SPIFFE ID
    serial: str
    not_before: datetime
    not_after: datetime
    issuer: str
    owner: str  # the proxy (admin source) that reported it
    dns: tuple[str, ...] = ()  # DNS SANs: `proxy.<trust domain>` on a service leaf

    @property
    def lifetime_s(self) -> float:
        return (self.not_after - self.not_before).total_seconds()


@dataclass(frozen=True, slots=True)
class ProxyCerts:
    """`GET /v1/certs`: the proxy's chain (leaf first), its anchors, and the next renewal."""

    identity: str | None
    certs: tuple[CertInfo, ...]
    next_renewal: datetime | None

    @classmethod
    def from_json(cls, owner: str, data: dict[str, Any] | list[Any]) -> ProxyCerts:
        if isinstance(data, list):
            data = {"chain": data}
        chain = list(data.get("chain") or data.get("certs") or ())
        anchors = list(data.get("bundle") or data.get("anchors") or ())
        certs: list[CertInfo] = []
        for index, item in enumerate(chain):
            kind = item.get("kind") or item.get("role")
            if not kind:
                if index == 0:
                    kind = "leaf"
                else:
                    kind = "anchor" if item.get("subject") == item.get("issuer") else "issuer"
            certs.append(_cert(owner, kind, item))
        certs += [_cert(owner, "anchor", item) for item in anchors]
        leaf_sans = certs[0].san if certs and certs[0].kind == "leaf" else ()
        return cls(
            identity=_text(data, "identity", "spiffe_id") or (leaf_sans[0] if leaf_sans else None),
            certs=tuple(certs),
            next_renewal=parse_time(data.get("next_renewal")),
        )


def _cert(owner: str, kind: str, data: dict[str, Any]) -> CertInfo:
    san = data.get("san") or data.get("sans") or ()
    not_before = parse_time(data.get("not_before"))
    not_after = parse_time(data.get("not_after"))
    if not_before is None or not_after is None:
        raise ValueError("certificate without not_before/not_after")
    return CertInfo(
        kind=str(kind),
        subject=str(data.get("subject") or "-"),
        san=(san,) if isinstance(san, str) else tuple(str(s) for s in san),
        serial=str(data.get("serial") or "-"),
        not_before=not_before,
        not_after=not_after,
        issuer=str(data.get("issuer") or "-"),
        owner=owner,
        dns=tuple(str(name) for name in data.get("dns") or ()),
    )


# --- endpoints (discovery) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failover:
    """Where a proxy sends an upstream's requests while it has no available instance of its
    own (ServicePolicy `failover`): `to` (None: no destination has one either), why, since."""

    to: str | None
    reason: str
    detail: str
    since: datetime | None

    @classmethod
    def from_json(cls, data: Any) -> Failover | None:
        if not isinstance(data, dict):
            return None
        to = data.get("to")
        return cls(to=str(to) if to else None, reason=str(data.get("reason") or "-"),
                   detail=str(data.get("detail") or ""), since=parse_time(data.get("since")))


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One instance of an upstream as a proxy balances over it."""

    id: str
    addr: str
    breaker: str  # closed | open | half-open; `-` when the proxy does not say
    gateway: str | None  # the server name a mesh gateway carries to the instance, if through one

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Endpoint:
        breaker = data.get("breaker")
        gateway = data.get("gateway")
        return cls(id=str(data.get("id") or "-"), addr=str(data.get("addr") or "-"),
                   breaker=str(breaker.get("state") or "-") if isinstance(breaker, dict) else "-",
                   gateway=str(gateway.get("server_name") or "-")
                   if isinstance(gateway, dict) else None)


@dataclass(frozen=True, slots=True)
class UpstreamEndpoints:
    """What discovery says about one upstream service, as a proxy sees it."""

    service: str
    source: str
    instances: int
    updated_at: datetime | None
    stale: bool
    members: tuple[Endpoint, ...] = ()  # the instances, when the proxy lists them
    failover: Failover | None = None
    refused: tuple[str, str] | None = None  # (reason, detail): discovery refuses the name
    error: str = ""  # why discovery's last query for it failed, while its set is stale

    @property
    def datacenter(self) -> str | None:
        """The Consul datacenter of `api.east`: `east`; None for a service of the proxy's
        own site."""
        _, dot, datacenter = self.service.partition(".")
        return datacenter if dot else None


def parse_endpoints(data: dict[str, Any] | list[Any]) -> list[UpstreamEndpoints]:
    """`GET /v1/endpoints`: a list (or `{"upstreams": [...]}` / `{service: {...}}`) of sets."""
    if isinstance(data, dict):
        items = data.get("upstreams")
        if items is None:
            items = [{"service": name, **value} for name, value in data.items()
                     if isinstance(value, dict)]
    else:
        items = data
    result = []
    for item in items or ():
        instances = item.get("instances") or 0  # missing, null or []: none
        listed = instances if isinstance(instances, list) else []
        refused = item.get("refused")
        result.append(
            UpstreamEndpoints(
                service=str(item.get("service") or "-"),
                source=str(item.get("source") or "-"),
                instances=len(instances) if isinstance(instances, list) else int(instances),
                updated_at=parse_time(item.get("updated_at") or item.get("last_seen")),
                stale=bool(item.get("stale")),
                members=tuple(Endpoint.from_json(i) for i in listed if isinstance(i, dict)),
                failover=Failover.from_json(item.get("failover")),
                refused=(str(refused.get("reason") or "-"), str(refused.get("detail") or ""))
                if isinstance(refused, dict) else None,
                error=str(item.get("error") or ""),
            )
        )
    return result


# --- logs --------------------------------------------------------------------------------

LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class LogLine:
    """One structured log line of a proxy (`vm_mesh.logs` format)."""

    proxy: str
    ts: float
    level: str
    logger: str
    msg: str
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, proxy: str, data: dict[str, Any]) -> LogLine:
        known = {"ts", "level", "logger", "msg"}
        level = str(data.get("level") or "info").lower()
        return cls(
            proxy=proxy,
            ts=float(data.get("ts") or 0.0),
            level="warning" if level == "warn" else level,
            logger=str(data.get("logger") or "-"),
            msg=str(data.get("msg") or ""),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def render(self) -> str:
        """One plain line: time, level, proxy, message, then key=value fields."""
        stamp = datetime.fromtimestamp(self.ts, UTC).strftime("%H:%M:%S")
        fields = " ".join(f"{k}={v}" for k, v in self.extra.items())
        text = f"{stamp} {self.level.upper():<7} {self.proxy:<12} {self.msg}"
        return f"{text} {fields}" if fields else text
