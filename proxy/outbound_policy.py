"""The outbound policy layers in stack order: route -> retry -> timeout -> split -> mirror.

`OutboundPolicy.forward` takes one request to a logical service and a
`send(backend)` function that forwards it once to a concrete backend service
(through the balancer, endpoint and pooled connection below). Each attempt
picks its backend afresh, as linkerd2-proxy's split sits below retries.
Mirrored copies are handed to the ShadowDispatcher after the primary has its
response, so a shadow never delays or fails it.
"""

import functools
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from proxy.events import RequestEvent
from proxy.retrying import send_with_retries
from proxy.route import RequestFacts
from proxy.shadow import ShadowDispatcher
from proxy.timeouts import Deadline, TaskTimer
from proxy.traffic import TrafficPolicy

R = TypeVar("R")


class OutboundPolicy:
    """Applies routes, retries, timeouts, splits and mirrors of the policy in force."""

    def __init__(
        self,
        traffic: Callable[[], TrafficPolicy],
        shadows: ShadowDispatcher,
        rng: random.Random | None = None,
    ) -> None:
        self._traffic = traffic
        self.shadows = shadows
        self._rng = rng or random.Random()

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
        if send_shadow is not None:
            for mirror in traffic.mirrors.sample(body_size):
                shadow = mirror.to
                self.shadows.submit(service, shadow, functools.partial(send_shadow, shadow))
        return result.response
