"""Counter and histogram families that cost one dict update per request.

prometheus_client's own metric children take a lock, check the metric type
and walk the buckets in Python on every `inc()` and `observe()`; at a few
thousand requests a second per proxy that was a sixth of the request path.
These tables keep each series as a plain dict entry, keyed by its label
values (a `Rollup` feeds several families from one entry per request), and
hand them to prometheus_client as a custom collector, so the library still
does the exposition (`generate_latest`, the text format) and Prometheus sees
ordinary counter and histogram families.

Every update and every scrape runs on the proxy's event loop thread, so a
scrape sees a consistent set of series without a lock.
"""

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence

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


class Rollup(Collector):
    """Counter and histogram families summed, when scraped, out of one table of rows.

    Each request updates one row, keyed by every label value any family needs:
    its per-bucket latency counts (the finest buckets; +Inf last) and their sum.
    A family names the labels it keeps (renamed if need be) and, for histograms,
    its buckets, a subset of the rollup's, so its counts are exact; rows a family's
    `when` refuses stay out of it. So a request costs one dict update and one
    bisect however many families it feeds.
    """

    def __init__(
        self, registry: CollectorRegistry, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(sorted(float(b) for b in buckets))
        self.rows: dict[LabelValues, list[float]] = {}
        self._families: list[_Projection] = []
        registry.register(self)

    def observe(
        self,
        values: LabelValues,
        amount: float,
        admit: Callable[[LabelValues], LabelValues] | None = None,
    ) -> None:
        """Count one request of `values` (every label, in `labelnames` order) taking `amount`.
        Values without a row yet pass `admit` first, which may bound them (the rows of
        admitted values are found without it)."""
        row = self.rows.get(values)
        if row is None:
            if admit is not None:
                values = admit(values)
                row = self.rows.get(values)
            if row is None:
                row = self.rows[values] = [0] * (len(self.bounds) + 2)  # buckets, +Inf, sum
        row[bisect_left(self.bounds, amount)] += 1
        row[-1] += amount

    def counter(self, name: str, documentation: str, labels: Mapping[str, str],
                when: Callable[[LabelValues], bool] | None = None) -> None:
        """A counter family (`<name>_total`) of the requests; `labels` maps each of its label
        names to the rollup label it takes its value from."""
        self._families.append(_Projection(self, name, documentation, labels, None, when))

    def histogram(self, name: str, documentation: str, labels: Mapping[str, str],
                  buckets: Sequence[float] | None = None,
                  when: Callable[[LabelValues], bool] | None = None) -> None:
        """A histogram family of the latencies, over `buckets` (default: all the rollup's)."""
        bounds = self.bounds if buckets is None else tuple(sorted(float(b) for b in buckets))
        if not set(bounds) <= set(self.bounds):
            raise ValueError(f"{name}: buckets must be some of the rollup's {self.bounds}")
        self._families.append(_Projection(self, name, documentation, labels, bounds, when))

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            yield family.collect()


class _Projection:
    """One family of a `Rollup`: rows grouped by some of its labels."""

    def __init__(self, rollup: Rollup, name: str, documentation: str, labels: Mapping[str, str],
                 bounds: tuple[float, ...] | None,
                 when: Callable[[LabelValues], bool] | None) -> None:
        self.rollup = rollup
        self.name = name.removesuffix("_total") if bounds is None else name
        self.documentation = documentation
        self.labelnames = tuple(labels)
        self.picks = tuple(rollup.labelnames.index(source) for source in labels.values())
        self.bounds = bounds
        self.when = when
        # the family's bucket each of the rollup's buckets falls in (+Inf: the last)
        self.into = (
            tuple(bisect_left(bounds, b) for b in (*rollup.bounds, float("inf")))
            if bounds is not None
            else ()
        )

    def _grouped(self) -> dict[LabelValues, list[float]]:
        groups: dict[LabelValues, list[float]] = {}
        picks, when, into = self.picks, self.when, self.into
        size = len(self.bounds) + 2 if self.bounds is not None else 1
        for values, row in self.rollup.rows.items():
            if when is not None and not when(values):
                continue
            key = tuple(values[i] for i in picks)
            group = groups.get(key)
            if group is None:
                group = groups[key] = [0] * size
            if self.bounds is None:
                group[0] += sum(row[:-1])
                continue
            for index, count in enumerate(row[:-1]):
                group[into[index]] += count
            group[-1] += row[-1]
        return groups

    def collect(self) -> Metric:
        groups = self._grouped()
        if self.bounds is None:
            counter = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
            for values, (total,) in groups.items():
                counter.add_metric(values, total)
            return counter
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        edges = [*(floatToGoString(b) for b in self.bounds), "+Inf"]
        for values, counts in groups.items():
            cumulative: list[tuple[str, float]] = []
            running = 0.0
            for edge, count in zip(edges, counts, strict=False):
                running += count
                cumulative.append((edge, running))
            family.add_metric(values, cumulative, counts[-1])
        return family


class Tables(Collector):
    """The counter tables of one registry, collected in the order they were made."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._tables: list[CounterTable] = []
        registry.register(self)

    def counter(self, name: str, documentation: str, labelnames: Sequence[str]) -> CounterTable:
        table = CounterTable(name, documentation, labelnames)
        self._tables.append(table)
        return table

    def collect(self) -> Iterator[Metric]:
        for table in self._tables:
            yield table.collect()
