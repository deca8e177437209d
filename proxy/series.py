"""Counter and histogram families that cost one dict update per request.

prometheus_client's own metric children take a lock, check the metric type
and walk the buckets in Python on every `inc()` and `observe()`; at a few
thousand requests a second per proxy that was a sixth of the request path.
These tables keep each series as a plain dict entry, keyed by its label
values, and hand them to prometheus_client as a custom collector, so the
library still does the exposition (`generate_latest`, the text format) and
Prometheus sees ordinary counter and histogram families.

Every update and every scrape runs on the proxy's event loop thread, so a
scrape sees a consistent set of series without a lock.
"""

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

LabelValues = tuple[str, ...]


class CounterTable:
    """A counter family (`<name>_total`): `inc(values)` adds to the series of `values`."""

    __slots__ = ("documentation", "labelnames", "name", "values")

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name.removesuffix("_total")
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.values: dict[LabelValues, float] = {}

    def inc(self, values: LabelValues, amount: float = 1) -> None:
        series = self.values
        series[values] = series.get(values, 0) + amount

    def collect(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, total in self.values.items():
            family.add_metric(values, total)
        return family


class HistogramTable:
    """A histogram family: `observe(values, amount)` counts `amount` in its bucket.

    Buckets are upper bounds, inclusive, as Prometheus defines `le`; each series
    keeps per-bucket counts (the +Inf bucket last) and the sum, made cumulative
    only when scraped.
    """

    __slots__ = ("bounds", "documentation", "labelnames", "name", "series")

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(sorted(float(b) for b in buckets))
        self.series: dict[LabelValues, list[float]] = {}

    def observe(self, values: LabelValues, amount: float) -> None:
        counts = self.series.get(values)
        if counts is None:
            counts = self.series[values] = [0] * (len(self.bounds) + 2)  # buckets, +Inf, sum
        counts[bisect_left(self.bounds, amount)] += 1
        counts[-1] += amount

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        edges = [*(floatToGoString(b) for b in self.bounds), "+Inf"]
        for values, counts in self.series.items():
            cumulative: list[tuple[str, float]] = []
            running: float = 0
            for edge, count in zip(edges, counts, strict=False):
                running += count
                cumulative.append((edge, running))
            family.add_metric(values, cumulative, counts[-1])
        return family


class Tables(Collector):
    """The tables of one registry, collected in the order they were made."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._tables: list[CounterTable | HistogramTable] = []
        registry.register(self)

    def counter(self, name: str, documentation: str, labelnames: Sequence[str]) -> CounterTable:
        table = CounterTable(name, documentation, labelnames)
        self._tables.append(table)
        return table

    def histogram(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> HistogramTable:
        table = HistogramTable(name, documentation, labelnames, buckets)
        self._tables.append(table)
        return table

    def collect(self) -> Iterator[Metric]:
        for table in self._tables:
            yield table.collect()
