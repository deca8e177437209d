"""The outbound policy layers in stack order: route -> retry -> timeout -> split -> mirror.

`OutboundPolicy.forward` takes one request to a logical service and a
`send(backend)` function that forwards it once to a concrete backend service
(through the balancer, endpoint and pooled connection below). Each attempt
picks its backend afresh, as linkerd2-proxy's split sits below retries.
Mirrored copies are handed to the ShadowDispatcher after the primary has its
response, so a shadow never delays or fails it. A route that neither retries,
splits nor bounds each try (the default) sends straight to its one backend,
within the request timeout.
"""

import functools
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from proxy.events import RequestEvent
from proxy.retrying import AttemptFailed, DeadlineExceeded, RetriesExhausted, send_with_retries
from proxy.route import RequestFacts
from proxy.shadow import ShadowDispatcher
from proxy.stats import WindowedStats
from proxy.timeouts import REQUEST_TIMEOUT, Deadline, TaskTimer
from proxy.traffic import RoutePlan, ServiceTraffic, TrafficPolicy

R = TypeVar("R")


class OutboundPolicy:
    """Applies routes, retries, timeouts, splits and mirrors of the policy in force."""

    def __init__(
        self,
        traffic: Callable[[], TrafficPolicy],
        shadows: ShadowDispatcher,
        rng: random.Random | None = None,
        stats: WindowedStats | None = None,
    ) -> None:
        """`stats` counts each request in flight on its route from the moment it is routed."""
        self._traffic = traffic
        self.shadows = shadows
        self._rng = rng or random.Random()
        self._stats = stats

    async def forward(
        self,
        service: str,
        facts: RequestFacts,
        body_size: int | None,
        event: RequestEvent,
        send: Callable[[str], Awaitable[R]],
        status_of: Callable[[R], int],
        discard: Callable[[R], Awaitable[None]] | None = None,
        send_shadow: Callable[[str], Awaitable[object]] | None = None,
        timer: TaskTimer | None = None,
    ) -> R:
        """Forward one request; raises DeadlineExceeded or RetriesExhausted (see retrying).
        `timer` is the calling task's, which enforces the timeouts."""
        traffic = self._traffic().service(service)
        plan = traffic.plan(facts)
        event.route = plan.target.route
        event.service = service
        if self._stats is not None:
            self._stats.started(event)

        backend = plan.only_backend
        if backend is not None and timer is not None:
            event.dst_service = backend
            timeout = plan.target.timeouts.request
            try:
                if timeout is None:
                    response = await send(backend)
                else:
                    with timer.bound(timeout):
                        response = await send(backend)
            except TimeoutError:
                raise DeadlineExceeded(REQUEST_TIMEOUT, 0) from None
            except AttemptFailed as exc:
                raise RetriesExhausted(exc, 0) from None
        else:
            response = await self._send_as_planned(plan, traffic, facts, body_size, event, send,
                                                   status_of, discard, timer)
        if send_shadow is not None:
            for mirror in traffic.mirrors.sample(body_size):
                shadow = mirror.to
                self.shadows.submit(service, shadow, functools.partial(send_shadow, shadow))
        return response

    async def _send_as_planned(
        self,
        plan: RoutePlan,
        traffic: ServiceTraffic,
        facts: RequestFacts,
        body_size: int | None,
        event: RequestEvent,
        send: Callable[[str], Awaitable[R]],
        status_of: Callable[[R], int],
        discard: Callable[[R], Awaitable[None]] | None,
        timer: TaskTimer | None,
    ) -> R:
        """Through the retry and timeout layers, each attempt to a backend the split picks."""

        def attempt() -> Awaitable[R]:  # not a coroutine: the attempt awaits `send` directly
            backend = plan.split.choose().service
            event.dst_service = backend
            return send(backend)

        try:
            result = await send_with_retries(
                attempt,
                status_of,
                method=facts.method,
                body_size=body_size,
                deadline=Deadline(plan.target.timeouts),
                retry=plan.retry,
                budget=traffic.budget if plan.retry else None,
                rng=self._rng,
                discard=discard,
                timer=timer,
            )
        except Exception as exc:
            event.retries = getattr(exc, "retries", event.retries)
            raise
        event.retries = result.retries
        return result.response
