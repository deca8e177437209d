"""How many connections each listener holds at once: HAProxy's `maxconn`, per listener.

A listener at its cap stops accepting (its `proxy.acceptor.Acceptor` waits for room) and
new connections wait in the kernel's backlog until one closes; none is accepted only to be
closed. A flood then costs the proxy no file descriptors beyond its caps, and the admin API,
capped on its own, stays reachable to diagnose it. Connections are counted as they are
accepted and as their task ends: per connection, nothing per request.

The defaults share the open-file limit (RLIMIT_NOFILE) out: `RESERVED_FDS` for the proxy's
own files and sockets, one descriptor per admin connection, two per proxied connection (the
client's and the one to the app or a peer), the rest split evenly among the data listeners.
A mesh gateway (`vmesh gateway run`) has one data listener and the admin socket, capped the
same way (`gateway_caps`).

Each listener logs the start of a saturation (`listener.saturated`) and its end, once per
episode; a listener that fills up again and again logs at most `SATURATION_LOG_BURST`
episodes at once and then one per `SATURATION_LOG_INTERVAL_S` (a token bucket), the next
line counting the episodes it did not log.
"""

import asyncio
import logging
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from vm_mesh.config import GatewayMaxConnections, MaxConnections
from vm_mesh.token_bucket import TokenBucket

log = logging.getLogger("vmesh.proxy.listeners")

RESERVED_FDS = 64  # listening sockets, log and state files, discovery, the pools' spare
FDS_PER_PROXIED_CONNECTION = 2
DEFAULT_ADMIN_MAX_CONNECTIONS = 64  # each of the admin port and socket: 16 taps, 16 follows
UNLIMITED_NOFILE = 1 << 20  # what an unlimited RLIMIT_NOFILE is taken for
SATURATION_LOG_INTERVAL_S = 60.0
SATURATION_LOG_BURST = 2
SATURATED = "listener.saturated"


@dataclass(frozen=True, slots=True)
class ListenerCaps:
    """The cap of each kind of listener."""

    inbound: int
    outbound: int
    tcp: int  # each [[tcp]] listener
    admin: int  # each of the admin port and the admin socket


@dataclass(frozen=True, slots=True)
class GatewayCaps:
    """The caps of a mesh gateway's listeners."""

    gateway: int  # the listener other sites connect to
    admin: int  # each of the admin socket and the admin port (when it has one)


def _share(nofile: int, admin_fds: int, data_listeners: int) -> int:
    """Each data listener's share of the open-file limit `nofile` (negative: unlimited), once
    the process's own files and `admin_fds` for its admin listeners are set aside."""
    if nofile < 0:
        nofile = UNLIMITED_NOFILE
    budget = nofile - RESERVED_FDS - admin_fds
    return max(1, budget // (FDS_PER_PROXIED_CONNECTION * data_listeners))


def listener_caps(settings: MaxConnections, nofile: int, tcp_listeners: int) -> ListenerCaps:
    """The caps `settings` (the service file's `[max_connections]`) sets, and for the ones it
    leaves out, shares of the open-file limit `nofile` (negative: unlimited) that together
    keep the listeners at their caps within it."""
    admin = settings.admin or DEFAULT_ADMIN_MAX_CONNECTIONS
    share = _share(nofile, 2 * admin, 2 + tcp_listeners)
    return ListenerCaps(
        inbound=settings.inbound or share,
        outbound=settings.outbound or share,
        tcp=settings.tcp or share,
        admin=admin,
    )


def gateway_caps(settings: GatewayMaxConnections, nofile: int,
                 admin_listeners: int = 1) -> GatewayCaps:
    """The caps gateway.toml's `[max_connections]` sets, and for the listener it leaves out
    the open-file limit `nofile` (negative: unlimited) less the admin cap of each of its
    `admin_listeners` (the socket, and the port if it has one) and the gateway's own files,
    two descriptors per carried connection (the caller's, the instance's)."""
    admin = settings.admin or DEFAULT_ADMIN_MAX_CONNECTIONS
    return GatewayCaps(gateway=settings.gateway or _share(nofile, admin_listeners * admin, 1),
                       admin=admin)


def soft_open_file_limit() -> int:
    """This process's open-file limit (RLIMIT_NOFILE, soft; negative: unlimited)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class ConnectionLimit:
    """The open connections of one listener against its cap; `saturated` while at it."""

    def __init__(self, listener: str, cap: int) -> None:
        self.listener = listener
        self.cap = cap
        self.open = 0
        self.saturations = 0  # episodes: times the listener reached its cap
        self._room: asyncio.Future[None] | None = None
        self._log_pace = TokenBucket(SATURATION_LOG_INTERVAL_S, SATURATION_LOG_BURST,
                                     now=time.monotonic())
        self._episode_logged = False
        self._unlogged = 0  # episodes since the last one logged

    @property
    def saturated(self) -> bool:
        return self.open >= self.cap

    def opened(self) -> None:
        """A connection was accepted."""
        self.open += 1
        if self.open == self.cap:
            self._saturate()

    def closed(self) -> None:
        """A connection ended; one that makes room wakes the listener."""
        self.open -= 1
        if self.open == self.cap - 1:
            self._relieve()

    async def room(self) -> None:
        """Until the listener is below its cap."""
        while self.saturated:
            self._room = asyncio.get_running_loop().create_future()
            try:
                await self._room
            finally:
                self._room = None

    def _saturate(self) -> None:
        self.saturations += 1
        if not self._log_pace.take(time.monotonic()):
            self._unlogged += 1
            return
        self._episode_logged = True
        log.warning("listener full: not accepting until a connection closes; new ones wait "
                    "in the backlog",
                    extra={"event": "listener_saturated", "reason": SATURATED,
                           "listener": self.listener, "max_connections": self.cap,
                           "episodes_unlogged": self._unlogged})
        self._unlogged = 0

    def _relieve(self) -> None:
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)
        if self._episode_logged:
            self._episode_logged = False
            log.info("listener accepting again",
                     extra={"event": "listener_resumed", "listener": self.listener,
                            "max_connections": self.cap})

    def snapshot(self) -> dict[str, Any]:
        return {"open": self.open, "max": self.cap, "saturated": self.saturated,
                "saturations": self.saturations}


class ListenerLimits(Collector):
    """The limits of a process's listeners, by name, read by `/v1/stats` and, in the registry
    given, at each scrape of `/metrics`: `tcp_open_connections` (Linkerd's name),
    `tcp_max_connections`, `tcp_listener_saturated` and `tcp_listener_saturations_total`,
    each with a `listener` label."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._limits: dict[str, ConnectionLimit] = {}
        if registry is not None:
            registry.register(self)

    def add(self, listener: str, cap: int) -> ConnectionLimit:
        """The limit of a new listener named `listener` (`inbound`, `tcp:db`, ...)."""
        limit = self._limits[listener] = ConnectionLimit(listener, cap)
        return limit

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Each listener's open connections, cap, whether it is saturated now, and how many
        times it was since the process started."""
        return {name: limit.snapshot() for name, limit in self._limits.items()}

    def collect(self) -> Iterator[Metric]:
        families = (
            (GaugeMetricFamily("tcp_open_connections", "Connections open now, per listener.",
                               labels=["listener"]), lambda c: c.open),
            (GaugeMetricFamily("tcp_max_connections",
                               "The most connections a listener holds at once.",
                               labels=["listener"]), lambda c: c.cap),
            (GaugeMetricFamily("tcp_listener_saturated",
                               "1 while a listener is at its cap and accepts nothing.",
                               labels=["listener"]), lambda c: int(c.saturated)),
            (CounterMetricFamily("tcp_listener_saturations",
                                 "Times a listener reached its cap and stopped accepting.",
                                 labels=["listener"]), lambda c: c.saturations),
        )
        for family, value in families:
            for name, limit in self._limits.items():
                family.add_metric([name], value(limit))
            yield family
