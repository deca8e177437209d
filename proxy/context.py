"""Everything one proxy's listeners share: config, TLS, events, policy, endpoints, pools."""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from proxy.breaker import BreakerSettings
from proxy.cert_metrics import CertExpiry
from proxy.connection import Connection
from proxy.downstream import Downstream
from proxy.endpoint_metrics import EndpointStates
from proxy.endpoints import UNUSED_SWEEPS, Endpoint, NoEndpoints, ServiceEndpoints
from proxy.events import EventBus, RequestEvent
from proxy.failover import choose
from proxy.observability import Observability
from proxy.outbound_policy import OutboundPolicy
from proxy.repeated_log import RepeatedLog
from proxy.retrying import AttemptFailed
from proxy.rewatch import watch_again_on_failure
from proxy.shadow import ShadowDispatcher
from proxy.tls import TlsMaterial
from proxy.traffic import TrafficPolicy
from proxy.upstream import Pool
from vm_mesh.config import ServiceConfig
from vm_mesh.discovery.base import Discovery, NotDiscoverable
from vm_mesh.policy.store import PolicyStore

log = logging.getLogger("vmesh.proxy")

FIRST_VIEW_TIMEOUT = 2.0
# request events reach metrics, stats, tap and the access log this many at a time, or 50 ms
# after the first one held (`EventBus`)
EVENT_BATCH = 128
DESTINATIONS_FULL = "destinations_full"
WATCH_SWEEP_S = 60.0  # how often watches of services no request asks for are looked for
# the reason of a request still in flight at its proxy's drain deadline (`cut_request`)
DRAIN_TIMEOUT = "proxy.drain_timeout"
CONNECT_ATTEMPTS = 3  # instances tried when connecting fails, before the attempt fails

T = TypeVar("T")


class ProxyContext:
    """The shared state of one sidecar proxy."""

    def __init__(
        self,
        config: ServiceConfig,
        tls: TlsMaterial,
        discovery: Discovery,
        policy: PolicyStore,
        bus: EventBus | None = None,
    ) -> None:
        self.config = config
        self.tls = tls
        self.discovery = discovery
        self.policy = policy
        self.bus = bus or EventBus(batch=EVENT_BATCH)
        self.observability = Observability.attach(self.bus, access_log=config.access_log)
        CertExpiry(self.observability.metrics.registry, tls)
        self.policy_metrics = self.observability.policy
        self.traffic = TrafficPolicy(policy.current, config.trust_domain)
        policy.subscribe(self._policy_changed)
        self.shadows = ShadowDispatcher(on_outcome=self.policy_metrics.mirror_outcome)
        self.outbound_policy = OutboundPolicy(
            lambda: self.traffic, self.shadows, stats=self.observability.stats
        )
        self.rng = random.Random()
        self.in_flight = 0
        self.inbound_in_flight = 0  # of in_flight: from peers, through the inbound listener
        # stateless beyond the counts: one of each serves every request
        self._in_flight = InFlight(self, inbound=False)
        self._in_flight_inbound = InFlight(self, inbound=True)
        self.draining = False
        self.exporting_spans = False  # a collector takes this proxy's spans (`SpanExport`)
        self._clients: set[Downstream] = set()
        self._detecting = 0  # connections whose first bytes do not tell their protocol yet
        self._tunnels_cut = 0  # opaque TCP tunnels `cut_connections` ended (`tunnelling`)
        # the task of each client connection of every listener (the loop keeps only weak
        # references): `cut_connections` ends those still open at the drain deadline
        self.connections: set[asyncio.Task[None]] = set()
        self._requests_cut = 0  # by `cut_request`
        # what `drained` waits on: woken when the requests in flight or the open client
        # connections fall to none (a future made only then, not an Event set per request)
        self._quiet: asyncio.Future[None] | None = None
        self.started_at = time.time()
        self._last_id = 0
        # the instance name is not live-reloadable, and may cost a gethostname() per call
        self._id_prefix = f"{config.instance}:"
        self._services: dict[str, ServiceEndpoints] = {}
        EndpointStates(self.observability.metrics.registry, self._services.values)
        # `may_route_to`'s refusals: the first after each sweep is logged, the rest counted
        self._refusals = RepeatedLog()
        self._first_view: dict[str, asyncio.Event] = {}
        self._watches: dict[str, asyncio.Task[None]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        # the pools of connections to instances (the outbound proxy's): told as they come and go
        self.upstream_pools: list[Pool] = []

    def _policy_changed(self, policy: Any) -> None:
        self.traffic = self.traffic.reloaded(policy)
        for service, endpoints in self._services.items():
            traffic = self.traffic.service(service)
            endpoints.set_breaker(_breaker_settings(traffic.circuit_breaker))
            endpoints.follow_failover_policy(traffic.failover)

    def next_id(self) -> str:
        self._last_id += 1
        return self._id_prefix + str(self._last_id)

    def new_event(self, direction: str, src_addr: str) -> RequestEvent:
        return RequestEvent(
            ts=time.time(),
            id=self.next_id(),
            direction=direction,  # type: ignore[arg-type]
            src_addr=src_addr,
        )

    def publish(self, event: RequestEvent, started: float) -> None:
        now = time.monotonic()
        event.latency_ms = (now - started) * 1000
        event.response_ms = ((event.response_at or now) - started) * 1000
        event.bound_client_text()
        self.bus.publish(event)

    @contextlib.contextmanager
    def downstream(self, connection: Connection, proxy_name: str,
                   from_peer_proxy: bool = False) -> Iterator[Downstream]:
        """A client connection of this proxy, known to `drain_clients` until it closes; one
        `from_peer_proxy` is told when it is closed idle (`Downstream.close_idle`)."""
        timeouts = self.config.timeouts
        client = Downstream(
            connection,
            proxy_name=proxy_name,
            header_timeout=timeouts.header,
            idle_timeout=timeouts.idle,
            announces_idle_close=from_peer_proxy,
        )
        if self.draining:
            client.drain()
        self._clients.add(client)
        try:
            yield client
        finally:
            self._clients.discard(client)
            self._note_if_no_clients()
            client.close()

    @contextlib.contextmanager
    def detecting(self) -> Iterator[None]:
        """A client connection whose protocol is being detected: open, and waited for by a
        drain until it is told, and then served as any other (its first bytes were sent
        before the drain began, so the client expects them answered)."""
        self._detecting += 1
        try:
            yield
        finally:
            self._detecting -= 1
            self._note_if_no_clients()

    @contextlib.contextmanager
    def tunnelling(self) -> Iterator[None]:
        """The `with` block relays an opaque TCP tunnel on a client connection's task: one
        `cut_connections` ends is counted as a tunnel cut (its event says `proxy.tcp.DRAIN_CUT`)."""
        try:
            yield
        except asyncio.CancelledError:
            self._tunnels_cut += 1
            raise

    async def cut_connections(self) -> tuple[int, int]:
        """End every client connection still open (the drain deadline passed) and wait until
        each has ended: a request in flight on one ends as `cut_request` says, a tunnel as
        `proxy.tcp.Tunnel.relay` does, and each is published, so its access log line and
        metrics come before the proxy stops; how many requests and tunnels were cut."""
        tasks = list(self.connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return self._requests_cut, self._tunnels_cut

    def cut_request(self, client: Downstream, event: RequestEvent) -> None:
        """The request of `event`, in flight on `client`, is cut at the drain deadline (its
        task cancelled by `cut_connections`): with no response head sent yet (no status) the
        client is answered 503 `DRAIN_TIMEOUT` and the connection closed, else the connection
        is aborted mid-response, so the client sees it cut short, not ended; either way the
        event ends with the error."""
        self._requests_cut += 1
        event.error = DRAIN_TIMEOUT
        if event.status is None:
            event.status = 503
            drain = self.config.timeouts.drain
            client.end_with_error(503, DRAIN_TIMEOUT,
                                  f"stopped before the answer came (drain timeout {drain:g}s)")
        else:
            client.connection.abort()

    def _note_if_no_clients(self) -> None:
        if not self.open_clients:
            self._wake_drain()

    def _wake_drain(self) -> None:
        quiet = self._quiet
        if quiet is not None and not quiet.done():
            quiet.set_result(None)

    @property
    def open_clients(self) -> int:
        """Client connections open now: those carrying HTTP (the app's and other proxies')
        and those still in protocol detection."""
        return len(self._clients) + self._detecting

    def drain_clients(self) -> None:
        """Let every client connection end after its next response, or once idle for a
        moment (`Downstream.drain`)."""
        self.draining = True
        for client in list(self._clients):
            client.drain()

    async def drained(self) -> None:
        """Until no request is in flight and no client connection is open."""
        while self.in_flight or self.open_clients:
            self._quiet = asyncio.get_running_loop().create_future()
            try:
                await self._quiet
            finally:
                self._quiet = None

    def request_in_flight(self, inbound: bool = False) -> "InFlight":
        """Count a request (or TCP connection) as in flight while the `with` block runs."""
        return self._in_flight_inbound if inbound else self._in_flight

    def may_route_to(self, service: str) -> bool:
        """Whether a request may go to `service`: it is watched already, or fewer than
        `max_destinations` services are. The first refusal after each sweep is logged."""
        if service in self._services or len(self._services) < self.config.max_destinations:
            return True
        if self._refusals.first(DESTINATIONS_FULL):
            log.warning("too many destination services; refusing requests for new ones",
                        extra={"event": DESTINATIONS_FULL, "dst_service": service,
                               "max_destinations": self.config.max_destinations})
        return False

    def known_endpoints(self, service: str) -> ServiceEndpoints | None:
        """The endpoints of `service` once discovery has answered for it, without waiting."""
        known = self._services.get(service)
        if known is not None and known.view is not None:  # discovery has answered
            known.used = True
            return known
        return None

    async def endpoints(self, service: str) -> ServiceEndpoints:
        """The endpoints of `service`, watching discovery from the first time it is asked for
        (and again once a refusal of the name is old)."""
        known = self._services.get(service)
        if known is not None and known.refused_long_ago(time.monotonic()):
            self._stop_watching(service)
            known = None
        if known is None:
            settings = self.traffic.service(service).circuit_breaker
            known = ServiceEndpoints(service, _breaker_settings(settings), self.rng)
            self._services[service] = known
            self._first_view[service] = asyncio.Event()
            self._watches[service] = asyncio.create_task(self._watch(known))
            if self._sweeper is None:
                self._sweeper = asyncio.create_task(self._sweep_unused_watches())
        known.used = True
        first_view = self._first_view[service]
        if not first_view.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(first_view.wait(), FIRST_VIEW_TIMEOUT)
        return known

    async def fail_over(self, own: ServiceEndpoints, event: RequestEvent) -> ServiceEndpoints:
        """Where a request or TCP connection for `own`'s service goes while the service has no
        available instance: the first destination of its ServicePolicy's `failover` that has
        one (named in `event.dst_service`; the change logged once, `ServiceEndpoints.fail_over`).
        NoEndpoints when none has (or it has none): the service's own reason, and the
        destinations'."""
        why = own.no_instance()
        order = self.traffic.service(own.service).failover
        if not order:
            raise why
        destinations: list[ServiceEndpoints] = []
        for name in order:
            if self.may_route_to(name):
                destinations.append(self.known_endpoints(name) or await self.endpoints(name))
        chosen = choose(destinations)
        own.fail_over(chosen.service if chosen is not None else None, why)
        if chosen is None:
            reasons = ", ".join(f"{d.service}: {d.no_instance().reason}" for d in destinations)
            raise NoEndpoints(
                why.reason, f"{why}; failover found no available instance either ({reasons})"
            )
        event.dst_service = chosen.service
        return chosen

    async def to_an_instance(
        self,
        backend: str,
        event: RequestEvent,
        tried: set[str],
        attempt: Callable[[ServiceEndpoints, Endpoint], Awaitable[T]],
    ) -> T:
        """`attempt` (an HTTP request, an opaque TCP connection) at one instance of `backend`;
        an instance that could not be connected to (AttemptFailed `connect-failure`: nothing
        was sent) is skipped for another, up to CONNECT_ATTEMPTS instances, as Linkerd does.
        `tried` holds the instances earlier attempts of the same request went to: a retry goes
        elsewhere while another instance is available (Envoy's `previous_hosts`), since the
        balancer would likely pick a fast-failing instance again. With no instance of
        `backend` available, the attempt goes to its failover destination (`fail_over`)."""
        endpoints = self.known_endpoints(backend) or await self.endpoints(backend)
        refused: set[str] = set()
        while True:
            endpoint = endpoints.pick(exclude=refused | tried) if tried else None
            if endpoint is None:
                endpoint = endpoints.pick(exclude=refused)
            if endpoint is None:
                if refused or endpoints.service != backend:  # its failover's, never followed
                    raise endpoints.no_instance()
                endpoints = await self.fail_over(endpoints, event)
                continue
            if endpoints.failover is not None:
                endpoints.fail_back_to(endpoint)
            tried.add(endpoint.instance.instance_id)
            try:
                return await attempt(endpoints, endpoint)
            except AttemptFailed as exc:
                refused.add(endpoint.instance.instance_id)
                if exc.outcome != "connect-failure" or len(refused) >= CONNECT_ATTEMPTS:
                    raise
                if len(refused) == len(endpoints.endpoints):
                    raise
                log.info(
                    "instance refused the connection; trying another",
                    extra={"dst_service": endpoints.service,
                           "instance": endpoint.instance.instance_id, "detail": str(exc)},
                )

    async def _watch(self, endpoints: ServiceEndpoints) -> None:
        service = endpoints.service
        try:
            async for view in watch_again_on_failure(
                lambda: self.discovery.watch(service), service
            ):
                arrived, departed = endpoints.update(view)
                idle_closed = self._turn_over(endpoints, arrived, departed)
                self._first_view[service].set()
                log.info(
                    "endpoints updated",
                    extra={
                        "dst_service": service,
                        "source": view.source,
                        "instances": [i.instance_id for i in view.instances],
                        "stale": view.stale,
                        "idle_closed": idle_closed,
                    },
                )
        except NotDiscoverable as refusal:
            endpoints.refuse(refusal, time.monotonic())
            self._first_view[service].set()
            log.warning("discovery refuses the service; its requests are refused",
                        extra={"dst_service": service, "reason": refusal.reason,
                               "detail": str(refusal)})

    def _turn_over(self, endpoints: ServiceEndpoints, arrived: set[str], departed: set[str]
                   ) -> int:
        """Tell the pools which upstreams `endpoints`' update brought and took away (those no
        other service still lists): the idle connections to instances gone are closed; how
        many."""
        if departed:
            for other in self._services.values():
                if other is not endpoints:
                    departed -= other.pool_keys()
        closed = 0
        for pool in self.upstream_pools:
            pool.readmit(arrived)
            closed += pool.retire(departed)
        return closed

    async def _sweep_unused_watches(self) -> None:
        """Stop watching the services no request has asked for in a while (UNUSED_SWEEPS
        sweeps), so that names an app asked for once, or a typo, do not keep a discovery
        watch each for as long as the proxy runs; a later request starts it again."""
        while True:
            await asyncio.sleep(WATCH_SWEEP_S)
            unlogged = self._refusals.close(DESTINATIONS_FULL)
            if unlogged:
                log.warning("refused more requests for new services than were logged",
                            extra={"event": "destinations_full_unlogged", "suppressed": unlogged,
                                   "within_s": WATCH_SWEEP_S})
            for service, endpoints in list(self._services.items()):
                if endpoints.unused_for_long():
                    self._stop_watching(service)
                    log.info("stopped watching an unused service",
                             extra={"dst_service": service,
                                    "unused_s": WATCH_SWEEP_S * UNUSED_SWEEPS})

    def _stop_watching(self, service: str) -> None:
        """Forget `service`: its watch, endpoints and compiled policy."""
        del self._services[service], self._first_view[service]
        self._watches.pop(service).cancel()
        self.traffic.forget(service)

    def describe_endpoints(self) -> dict[str, Any]:
        return {"upstreams": [s.describe() for s in self._services.values()]}

    async def close(self) -> None:
        tasks = [*self._watches.values(), *([self._sweeper] if self._sweeper else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class InFlight:
    """The in-flight count of a proxy, held by each request in a `with` block; a class, not a
    generator context manager, because every request enters it (it keeps no state of its
    own, so one instance serves concurrent requests)."""

    __slots__ = ("_ctx", "_inbound")

    def __init__(self, ctx: ProxyContext, inbound: bool) -> None:
        self._ctx = ctx
        self._inbound = inbound

    def __enter__(self) -> None:
        ctx = self._ctx
        ctx.in_flight += 1
        ctx.inbound_in_flight += self._inbound

    def __exit__(self, *_: object) -> None:
        ctx = self._ctx
        ctx.in_flight -= 1
        ctx.inbound_in_flight -= self._inbound
        if not ctx.in_flight:
            ctx._wake_drain()


def _breaker_settings(spec: Any) -> BreakerSettings:
    backoff = spec.backoff
    return BreakerSettings(
        consecutive_failures=spec.consecutive_failures,
        min_s=backoff.min,
        max_s=backoff.max,
        jitter=backoff.jitter,
    )
