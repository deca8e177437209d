"""A proxy's span export as mesh.toml's `[tracing]` says, switched live on SIGHUP.

`apply` starts exporting to a collector, moves to another, or stops; spans
already queued for the collector it leaves are still sent there (the requests
they describe ran under that config). The OTLP exporter, and httpx with it, is
imported only once a collector is named.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.span_tally import SpanTally
from vm_mesh.config import Tracing

if TYPE_CHECKING:
    from proxy.context import ProxyContext
    from proxy.otlp import SpanExporter

log = logging.getLogger("vmesh.proxy.tracing")


class SpanExport:
    """The exporter in force (if any), subscribed to the proxy's request events; the proxy
    makes spans (`ProxyContext.exporting_spans`) only while there is one."""

    def __init__(self, ctx: "ProxyContext", resource: dict[str, str]) -> None:
        self._ctx = ctx
        self._tally = SpanTally(ctx.observability.metrics.registry)
        self._resource = resource  # service.name and the like, on every batch
        self.exporter: SpanExporter | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()  # exporters sending their last spans

    @property
    def endpoint(self) -> str | None:
        return self.exporter.endpoint if self.exporter is not None else None

    def apply(self, tracing: Tracing | None) -> None:
        """Export to `tracing`'s collector from now on (None: stop exporting)."""
        endpoint = tracing.otlp_endpoint if tracing is not None else None
        if endpoint == self.endpoint:
            return
        if self.exporter is not None:
            retiring = asyncio.create_task(self._retire().close())
            self._retiring.add(retiring)
            retiring.add_done_callback(self._retiring.discard)
        if endpoint is None:
            log.info("no longer exporting spans", extra={"event": "tracing_disabled"})
            return
        from proxy.otlp import SpanExporter

        log.info("exporting the spans of sampled traces",
                 extra={"event": "tracing_enabled", "endpoint": endpoint})
        exporter = self.exporter = SpanExporter(endpoint, self._resource, self._tally)
        self._unsubscribe = self._ctx.bus.subscribe(exporter.observe)
        exporter.start()
        self._ctx.exporting_spans = True

    async def close(self) -> None:
        """Send every span still queued (a stopping proxy's last requests), then stop."""
        if self.exporter is not None:
            await self._retire().close()
        await asyncio.gather(*self._retiring, return_exceptions=True)

    def _retire(self) -> "SpanExporter":
        """Detach the exporter in force from the events now, and return it to be closed."""
        exporter, unsubscribe = self.exporter, self._unsubscribe
        assert exporter is not None and unsubscribe is not None
        self.exporter = self._unsubscribe = None
        self._ctx.exporting_spans = False
        unsubscribe()
        return exporter
