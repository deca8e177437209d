"""The per-request metric tables and rollups scrape exactly like prometheus_client's own
metrics fed each request."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from proxy.series import Rollup, Tables

BUCKETS = (1, 2, 5, 10, 50, 100)
LABELS = st.sampled_from([("a", "x"), ("a", "y"), ("b", "x")])
ROWS = st.sampled_from([("a", "x", "200"), ("a", "y", "200"), ("b", "x", "503"), ("a", "x", "503")])
COARSE = (2, 10, 100)


def _exposition(registry: CollectorRegistry) -> list[str]:
    """Sample lines, without the `_created` series only prometheus_client's own metrics have."""
    lines = generate_latest(registry).decode().splitlines()
    return sorted(line for line in lines if "_created" not in line and not line.startswith("#"))


# bucket bounds themselves are drawn often (`le` is inclusive); quarters add up exactly in any
# order (a rollup sums per row first, prometheus_client per series)
AMOUNTS = st.one_of(
    st.sampled_from([0.0, *map(float, BUCKETS)]), st.integers(0, 2000).map(lambda n: n / 4)
)


@given(st.lists(st.tuples(ROWS, AMOUNTS), max_size=50))
def test_rollup_families_match_prometheus_client_fed_each_request(observations) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    rollup = Rollup(ours, ["svc", "route", "status"], BUCKETS)
    rollup.counter("request_total", "Requests.", {"svc": "svc", "route": "route"})
    rollup.histogram("latency_ms", "Latency.", {"service": "svc"})
    rollup.histogram("coarse_ms", "Latency, coarse.", {"code": "status"}, COARSE,
                     when=lambda values: values[1] != "y")
    requests = Counter("request_total", "Requests.", ["svc", "route"], registry=theirs)
    latency = Histogram("latency_ms", "Latency.", ["service"], buckets=BUCKETS, registry=theirs)
    coarse = Histogram("coarse_ms", "Latency, coarse.", ["code"], buckets=COARSE,
                       registry=theirs)
    for (svc, route, status), amount in observations:
        rollup.observe((svc, route, status), amount)
        requests.labels(svc, route).inc()
        latency.labels(svc).observe(amount)
        if route != "y":
            coarse.labels(status).observe(amount)
    assert _exposition(ours) == _exposition(theirs)


def test_a_rollup_family_takes_only_buckets_the_rollup_has() -> None:
    rollup = Rollup(CollectorRegistry(), ["svc"], BUCKETS)
    with pytest.raises(ValueError, match="buckets must be some of the rollup's"):
        rollup.histogram("latency_ms", "Latency.", {"svc": "svc"}, (1, 3))


@given(st.lists(st.tuples(LABELS, st.integers(0, 1000)), max_size=50))
def test_counter_table_matches_prometheus_counter(increments) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    table = Tables(ours).counter("request_total", "Requests.", ["svc", "route"])
    reference = Counter("request_total", "Requests.", ["svc", "route"], registry=theirs)
    for labels, amount in increments:
        table.inc(labels, amount)
        reference.labels(*labels).inc(amount)
    assert _exposition(ours) == _exposition(theirs)
