"""What became of a proxy's spans, as Prometheus counters read at each scrape.

`tracing_span_sent_total` counts the spans a collector took; `tracing_span_dropped_total`
the ones lost, by `reason`: `queue_full` (the collector was too slow or away for too long),
`rejected` (it refused their batch for good) and `cut` (still queued when the proxy stopped
or moved to another collector, and not sent in time). The counts run across collectors.
"""

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

DROP_REASONS = ("queue_full", "rejected", "cut")


class SpanTally(Collector):
    """The counts every exporter of the proxy adds to (`None` registry: counted only)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.sent = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "tracing_span_sent", "Spans a trace collector took.", value=self.sent)
        dropped = CounterMetricFamily(
            "tracing_span_dropped", "Spans lost before a trace collector took them.",
            labels=["reason"])
        for reason, count in self.dropped.items():
            dropped.add_metric([reason], count)
        yield dropped
