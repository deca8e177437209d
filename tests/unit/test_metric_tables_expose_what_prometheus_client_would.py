"""The per-request metric tables scrape exactly like prometheus_client's own metrics."""

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from proxy.series import Tables

BUCKETS = (1, 2, 5, 10, 50, 100)
LABELS = st.sampled_from([("a", "x"), ("a", "y"), ("b", "x")])
# bucket bounds themselves are drawn often: `le` is inclusive
AMOUNTS = st.one_of(st.sampled_from([0.0, *map(float, BUCKETS)]), st.floats(0, 500))


def _exposition(registry: CollectorRegistry) -> list[str]:
    """Sample lines, without the `_created` series only prometheus_client's own metrics have."""
    lines = generate_latest(registry).decode().splitlines()
    return sorted(line for line in lines if "_created" not in line and not line.startswith("#"))


@given(st.lists(st.tuples(LABELS, AMOUNTS), max_size=50))
def test_histogram_table_matches_prometheus_histogram(observations) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    table = Tables(ours).histogram("latency_ms", "Latency.", ["svc", "route"], BUCKETS)
    reference = Histogram("latency_ms", "Latency.", ["svc", "route"], buckets=BUCKETS,
                          registry=theirs)
    for labels, amount in observations:
        table.observe(labels, amount)
        reference.labels(*labels).observe(amount)
    assert _exposition(ours) == _exposition(theirs)


@given(st.lists(st.tuples(LABELS, st.integers(0, 1000)), max_size=50))
def test_counter_table_matches_prometheus_counter(increments) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    table = Tables(ours).counter("request_total", "Requests.", ["svc", "route"])
    reference = Counter("request_total", "Requests.", ["svc", "route"], registry=theirs)
    for labels, amount in increments:
        table.inc(labels, amount)
        reference.labels(*labels).inc(amount)
    assert _exposition(ours) == _exposition(theirs)
