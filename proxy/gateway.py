"""A mesh gateway: other sites' mTLS connections carried to this site's instances, unopened.

Sites whose networks do not route to each other reach one another through
gateways, as Consul's mesh gateways do: a caller in west connects to a gateway
of east (found in Consul as `vmesh-gateway` in datacenter east, at its `wan`
tagged address) and starts its TLS handshake with the server name
`api.east.<trust domain>` (vm_mesh.discovery.sites.gateway_server_name). The
gateway reads that name from the ClientHello (proxy/clienthello.py), picks a
passing instance of `api` from its own site's Consul, and splices the bytes
both ways. The handshake, and so the mutual authentication, is between the
caller's proxy and the east instance's inbound proxy: east sees and authorizes
the caller's own identity, and the gateway holds no key and reads no request.

A connection the gateway cannot route is refused with a TLS alert (so the
caller's handshake fails at once with a reason), a log line and a count in
`gateway_refused_total{reason}`. The count is exact; the log is not flooded by a scanner
or a misconfigured site: the first refusal of each reason is logged, the next ones within
`refusal_log_interval` only counted, and one line at the interval's end says how many
(proxy/repeated_log.py, as the proxy logs its own repeated refusals). Reasons: not
TLS, no whole ClientHello in time or in `MAX_HELLO_BYTES`, no server name, a name that
is no service of this site (`gateway.unknown_name`, `gateway.other_site`), no passing
instance, none that accepts the connection.

The instances come from the site's Consul through last known good
(vm_mesh.discovery.lastknown), as a proxy's do: while the local agent fails or does not
answer, the gateway goes on carrying connections to the instances it last knew (saved on
disk, so a gateway restarted during the outage has them too), logs the switch each way, and
counts the services it routes on such a stale set in `gateway_discovery_stale_services`; its
`/ready` stays 200 and says so.

The listener holds at most its cap of connections at once (gateway.toml's `[max_connections]
gateway`, by default a share of the open-file limit), as a proxy's listeners do
(proxy/listener_limits.py): at the cap it accepts nothing, new connections wait in the
kernel's backlog until one closes, and a flood costs the gateway no descriptor beyond it.
"""

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from proxy import clienthello
from proxy.acceptor import Acceptor
from proxy.keepalive import keep_alive
from proxy.listener_limits import ConnectionLimit
from proxy.repeated_log import RepeatedLog
from proxy.rewatch import watch_again_on_failure
from proxy.tcp import reset
from vm_mesh.discovery import sites
from vm_mesh.discovery.base import Discovery, EndpointSet, Instance, NotDiscoverable

log = logging.getLogger("vmesh.gateway")

CHUNK = 64 * 1024
FIRST_SET_S = 2.0  # how long a connection waits for the first answer of a new watch
MAX_SERVICES = 1024  # services watched at once; names beyond are refused
UNUSED_S = 600.0  # a watch no connection asked for in this long is let go
CONNECT_ATTEMPTS = 3  # instances tried for one connection
READ_HELLO = 4096

# TLS alerts (RFC 8446 6): sent in the clear, before any handshake message of ours
ALERT_UNRECOGNIZED_NAME = 112
ALERT_INTERNAL_ERROR = 80
ALERT_DECODE_ERROR = 50


def alert(description: int) -> bytes:
    """A fatal TLS alert record: what a server says when it will not go on."""
    return bytes((0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description))


class Refused(Exception):
    """A connection the gateway does not carry: `reason` is stable, `alert` the TLS alert
    the client gets (None: it gets none, e.g. it sent no TLS)."""

    def __init__(self, reason: str, detail: str, alert: int | None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.alert = alert


def route(hello: clienthello.Hello, datacenter: str, trust_domain: str) -> str:
    """The service of this site a ClientHello asks for; Refused when it names none."""
    name = hello.server_name
    if name is None:
        raise Refused("gateway.no_sni", "the ClientHello names no server (SNI)",
                      ALERT_UNRECOGNIZED_NAME)
    found = sites.gateway_route(name, trust_domain)
    if found is None:
        raise Refused(
            "gateway.unknown_name",
            f"{name!r} is not <service>.<datacenter>.{trust_domain}", ALERT_UNRECOGNIZED_NAME,
        )
    service, asked = found
    if asked != datacenter:
        raise Refused(
            "gateway.other_site",
            f"{name!r} names datacenter {asked}; this gateway carries {datacenter}'s services",
            ALERT_UNRECOGNIZED_NAME,
        )
    return service


class GatewayMetrics:
    """The gateway's counters, in the registry its admin API's /metrics serves."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.carried = Counter("gateway_connection", "Connections carried to an instance",
                               ["dst_service"], registry=registry)
        self.refused = Counter("gateway_refused", "Connections refused, by reason",
                               ["reason"], registry=registry)
        self.bytes = Counter("gateway_bytes", "Bytes carried (to_service: from the caller)",
                             ["dst_service", "direction"], registry=registry)
        self.open = Gauge("gateway_open_connections", "Connections being carried now",
                          registry=registry)
        self.stale = Gauge("gateway_discovery_stale_services",
                           "Services routed on their last known instances: discovery fails",
                           registry=registry)


@dataclass
class _Watch:
    task: asyncio.Task[None] | None = None
    current: EndpointSet | None = None
    refused: NotDiscoverable | None = None
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    used_at: float = field(default_factory=time.monotonic)


class LocalServices:
    """The passing instances of this site's services, watched from the first connection that
    asks for each, and let go after `UNUSED_S` without one."""

    def __init__(self, discovery: Discovery) -> None:
        self.discovery = discovery
        self._watches: dict[str, _Watch] = {}

    def stale(self) -> list[str]:
        """The services routed on a stale set: discovery failed since it last confirmed it."""
        return [service for service, watch in self._watches.items()
                if watch.current is not None and watch.current.stale]

    async def instances(self, service: str) -> tuple[Instance, ...]:
        """The passing instances of `service` (waiting up to FIRST_SET_S for a new watch);
        Refused when there are too many services or discovery refuses the name."""
        watch = self._watches.get(service)
        if watch is None:
            self._sweep()
            if len(self._watches) >= MAX_SERVICES:
                raise Refused("gateway.too_many_services",
                              f"this gateway watches {MAX_SERVICES} services already",
                              ALERT_INTERNAL_ERROR)
            watch = self._watches[service] = _Watch()
            watch.task = asyncio.create_task(self._follow(service, watch))
        watch.used_at = time.monotonic()
        if not watch.answered.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.answered.wait(), FIRST_SET_S)
        if watch.refused is not None:
            raise Refused(watch.refused.reason, str(watch.refused), ALERT_UNRECOGNIZED_NAME)
        return watch.current.instances if watch.current is not None else ()

    async def _follow(self, service: str, watch: _Watch) -> None:
        sets: AsyncIterator[EndpointSet] = watch_again_on_failure(
            lambda: self.discovery.watch(service), service)
        try:
            async for found in sets:
                _log_staleness(service, watch.current, found)
                watch.current = found
                watch.answered.set()
        except NotDiscoverable as refusal:
            watch.refused = refusal
            watch.answered.set()

    def _sweep(self) -> None:
        """Let go of the watches no connection asked for in UNUSED_S."""
        now = time.monotonic()
        for service, watch in list(self._watches.items()):
            if now - watch.used_at > UNUSED_S:
                del self._watches[service]
                if watch.task is not None:
                    watch.task.cancel()
                log.info("stopped watching an unused service", extra={"dst_service": service})

    def describe(self) -> list[dict[str, Any]]:
        """`/v1/endpoints`' upstreams: each watched service and its passing instances."""
        return [
            {"service": service,
             "source": watch.current.source if watch.current else None,
             "stale": watch.current.stale if watch.current else None,
             "refused": {"reason": watch.refused.reason, "detail": str(watch.refused)}
             if watch.refused else None,
             "instances": [{"id": i.instance_id, "addr": i.authority}
                           for i in (watch.current.instances if watch.current else ())]}
            for service, watch in sorted(self._watches.items())
        ]

    async def close(self) -> None:
        tasks = [w.task for w in self._watches.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watches.clear()


def _log_staleness(service: str, before: EndpointSet | None, now: EndpointSet) -> None:
    """Log a switch to a stale set (discovery fails: the last known instances carry on) and
    back to a fresh one."""
    if now.stale and (before is None or not before.stale):
        log.warning("discovery does not answer; carrying connections to the last known "
                    "instances", extra={"event": "gateway_discovery_stale",
                                        "dst_service": service, "source": now.source,
                                        "instances": len(now.instances),
                                        "confirmed_at": now.updated_at})
    elif before is not None and before.stale and not now.stale:
        log.info("discovery answers again", extra={"event": "gateway_discovery_fresh",
                                                   "dst_service": service,
                                                   "instances": len(now.instances)})


async def read_hello(
    reader: asyncio.StreamReader, within: float
) -> tuple[bytes, clienthello.Hello]:
    """The bytes of a whole ClientHello as read, and what it says; Refused otherwise."""
    data = b""
    try:
        async with asyncio.timeout(within):
            while True:
                try:
                    hello = clienthello.parse(data)
                except clienthello.BadHello as bad:
                    raise Refused(bad.reason, str(bad), ALERT_DECODE_ERROR
                                  if bad.reason != "gateway.not_tls" else None) from None
                if hello is not None:
                    return data, hello
                more = await reader.read(READ_HELLO)
                if not more:
                    raise Refused("gateway.hello_truncated" if data else "gateway.no_hello",
                                  f"the client closed after {len(data)} bytes, before a whole "
                                  "ClientHello", None)
                data += more
    except TimeoutError:
        raise Refused("gateway.hello_timeout",
                      f"no whole ClientHello within {within:g}s ({len(data)} bytes came)",
                      None) from None


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, count: Any) -> None:
    """Copy until `source` ends, then half-close `sink` (its peer may still answer)."""
    while data := await source.read(CHUNK):
        count(len(data))
        sink.write(data)
        await sink.drain()
    if sink.can_write_eof():
        sink.write_eof()


class Gateway:
    """Accepts other sites' connections and carries each to an instance of the service its
    server name asks for."""

    def __init__(
        self,
        datacenter: str,
        trust_domain: str,
        services: LocalServices,
        metrics: GatewayMetrics,
        hello_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        refusal_log_interval: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self.datacenter = datacenter
        self.trust_domain = trust_domain
        self.services = services
        self.metrics = metrics
        self.hello_timeout = hello_timeout
        self.connect_timeout = connect_timeout
        self.refusal_log_interval = refusal_log_interval
        self._refusals_logged = RepeatedLog()
        self._rng = rng or random.Random()
        self.connections: set[asyncio.Task[None]] = set()

    def serve(self, host: str, port: int, limit: ConnectionLimit) -> Acceptor:
        """Listen on `host:port`, holding at most `limit`'s cap of connections at once (at the
        cap it accepts nothing: new ones wait in the kernel's backlog)."""
        return Acceptor(host, port, self._accepted, self.connections, limit)

    async def _accepted(self, sock: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=sock, limit=CHUNK)
        except OSError:
            sock.close()
            return
        await self.handle(reader, writer)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Carry one connection, or refuse it (alert, log, count)."""
        peer = writer.get_extra_info("peername")
        client = f"{peer[0]}:{peer[1]}" if peer else "?"
        keep_alive(writer.get_extra_info("socket"))
        try:
            hello, said = await read_hello(reader, self.hello_timeout)
            service = route(said, self.datacenter, self.trust_domain)
            up_reader, up_writer, instance = await self._connect(service)
        except Refused as refused:
            self._refuse(writer, refused, client)
            return
        except (ConnectionError, OSError):
            writer.close()
            return
        await self._carry(service, instance, hello, (reader, writer), (up_reader, up_writer),
                          client)

    def _refuse(self, writer: asyncio.StreamWriter, refused: Refused, client: str) -> None:
        # a connection closed without a byte is a probe (the agent's TCP check), not a refusal
        if refused.reason != "gateway.no_hello":
            self.metrics.refused.labels(refused.reason).inc()
            if self._refusals_logged.first(refused.reason):
                log.info("gateway refused a connection",
                         extra={"event": "gateway_refused", "reason": refused.reason,
                                "detail": str(refused)[:300], "client": client})
                asyncio.get_running_loop().call_later(
                    self.refusal_log_interval, self._tell_unlogged, refused.reason)
        with contextlib.suppress(Exception):
            if refused.alert is not None:
                writer.write(alert(refused.alert))
            writer.close()

    def _tell_unlogged(self, reason: str) -> None:
        """End `reason`'s log period: one line with the refusals not logged in it, if any."""
        unlogged = self._refusals_logged.close(reason)
        if unlogged:
            log.info("gateway refused more connections than it logged",
                     extra={"event": "gateway_refused_unlogged", "reason": reason,
                            "suppressed": unlogged, "within_s": self.refusal_log_interval})

    def tell_unlogged_refusals(self) -> None:
        """End every open log period now (the gateway stops): no count goes untold."""
        for reason in self._refusals_logged.open_keys():
            self._tell_unlogged(reason)

    async def _connect(
        self, service: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Instance]:
        """A TCP connection to a passing instance of `service`, trying up to
        CONNECT_ATTEMPTS of them; Refused when none is listed or none accepts."""
        instances = list(await self.services.instances(service))
        if not instances:
            raise Refused("gateway.no_instances",
                          f"discovery lists no passing instance of {service} in "
                          f"{self.datacenter}", ALERT_INTERNAL_ERROR)
        self._rng.shuffle(instances)  # each connection goes to any instance, evenly
        failures = []
        for instance in instances[:CONNECT_ATTEMPTS]:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    up_reader, up_writer = await asyncio.open_connection(
                        instance.address, instance.port, limit=CHUNK)
            except (TimeoutError, OSError) as exc:
                failures.append(f"{instance.authority}: {str(exc) or type(exc).__name__}")
                continue
            keep_alive(up_writer.get_extra_info("socket"))
            return up_reader, up_writer, instance
        raise Refused("gateway.connect_failed",
                      f"no instance of {service} accepted the connection ({'; '.join(failures)})",
                      ALERT_INTERNAL_ERROR)

    async def _carry(
        self,
        service: str,
        instance: Instance,
        hello: bytes,
        caller: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        client: str,
    ) -> None:
        """Send the ClientHello on, then splice both ways until both directions ended; a
        failure either way resets both connections."""
        metrics = self.metrics
        metrics.carried.labels(service).inc()
        to_service = metrics.bytes.labels(service, "to_service").inc
        from_service = metrics.bytes.labels(service, "from_service").inc
        log.info("gateway carries a connection",
                 extra={"event": "gateway_carried", "dst_service": service,
                        "instance": instance.instance_id, "client": client})
        metrics.open.inc()
        upstream[1].write(hello)
        to_service(len(hello))
        ways = (asyncio.ensure_future(_pipe(caller[0], upstream[1], to_service)),
                asyncio.ensure_future(_pipe(upstream[0], caller[1], from_service)))
        try:
            await asyncio.gather(*ways)
        except (ConnectionError, OSError):
            reset(caller[1])
            reset(upstream[1])
        except asyncio.CancelledError:  # cut at the gateway's drain deadline
            reset(caller[1])
            reset(upstream[1])
            raise
        finally:
            metrics.open.dec()
            for way in ways:
                way.cancel()
            for writer in (caller[1], upstream[1]):
                writer.close()
