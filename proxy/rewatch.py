"""A discovery watch that is started again after it fails.

Kept apart from `proxy.context`, which mypyc compiles (setup.py): it does not compile async
generators.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from vm_mesh.backoff import full_jitter
from vm_mesh.discovery.base import EndpointSet, NotDiscoverable

log = logging.getLogger("vmesh.proxy")

WATCH_RETRY_MIN_S = 1.0
WATCH_RETRY_MAX_S = 30.0


async def watch_again_on_failure(
    watch: Callable[[], AsyncIterator[EndpointSet]],
    service: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[EndpointSet]:
    """The views of `watch()`, which is started again after a failure, within 1 s and then
    within twice as long each time in a row up to 30 s (full jitter): one error of a backend
    must not freeze a service's endpoints until the proxy restarts (it routes on the last
    view meanwhile), nor bring every proxy back to it at once. NotDiscoverable (the backend
    refuses the name for good) is raised, not retried."""
    failures = 0
    while True:
        try:
            async for view in watch():
                failures = 0
                yield view
            return
        except NotDiscoverable:
            raise
        except Exception as exc:
            failures += 1
            delay = full_jitter(WATCH_RETRY_MIN_S, WATCH_RETRY_MAX_S, failures - 1)
            log.error(
                "discovery watch failed; watching again",
                extra={"dst_service": service, "error": repr(exc), "retry_in_s": delay},
                exc_info=True,
            )
            await sleep(delay)
