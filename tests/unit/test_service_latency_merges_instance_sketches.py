"""A service's latency in `vmesh stat` and the overview is that of all its instances' requests
together, merged from the sketches `/v1/stats` carries, not the worst instance's."""

from hypothesis import given
from hypothesis import strategies as st

from console.api import RouteStats
from console.models.overview import combine, merged_percentile
from proxy.stats import SKETCH_POINTS, quantile_sketch
from vm_mesh.quantiles import weighted_percentile


def unweighted(values: list[float]) -> list[tuple[float, float]]:
    return [(value, 1.0) for value in sorted(values)]


def percentile(values: list[float], fraction: float) -> float | None:
    return weighted_percentile(unweighted(values), fraction)


def route(latencies: list[float], requests: int) -> RouteStats:
    ordered = sorted(latencies)
    return RouteStats.from_json(
        {"direction": "inbound", "service": "api", "route": "default", "rps": requests / 60,
         "requests": requests, "success_rate": 1.0, "p50_ms": percentile(ordered, 0.5),
         "p95_ms": percentile(ordered, 0.95), "p99_ms": percentile(ordered, 0.99),
         "latency_sketch_ms": quantile_sketch(unweighted(ordered))},
        "inbound",
    )


def test_an_idle_slow_instance_does_not_set_the_service_latency() -> None:
    busy_fast = route([18.0 + (i % 5) for i in range(5_000)], requests=5_000)
    idle_slow = route([145.0] * 10, requests=10)
    golden = combine([busy_fast, idle_slow])
    assert idle_slow.p50_ms == 145.0
    assert golden.p50_ms == 20.0  # what nearly every request saw
    assert golden.p99_ms == 22.0


def test_a_slow_instance_with_half_the_requests_shows_in_the_tail() -> None:
    golden = combine([route([20.0] * 500, 500), route([145.0] * 500, 500)])
    assert (golden.p50_ms, golden.p99_ms) == (20.0, 145.0)


def test_a_proxy_without_sketches_falls_back_to_the_worst_instance() -> None:
    older = RouteStats.from_json({"service": "api", "rps": 1, "requests": 60, "p99_ms": 90.0},
                                 "inbound")
    golden = combine([route([20.0] * 100, 100), older])
    assert golden.p99_ms == 90.0


def test_a_sketch_has_at_most_its_points_and_keeps_the_extremes_order() -> None:
    sketch = quantile_sketch(unweighted([float(i) for i in range(10_000)]))
    assert len(sketch) == SKETCH_POINTS
    assert sketch == sorted(sketch) and sketch[0] < 100 and sketch[-1] > 9_900


samples = st.lists(st.floats(0, 10_000, allow_nan=False), min_size=1, max_size=SKETCH_POINTS)


@given(st.lists(samples, min_size=1, max_size=4), st.sampled_from([0.5, 0.95, 0.99]))
def test_merging_whole_samples_is_the_percentile_of_their_union(rows, fraction) -> None:
    # a sample small enough is its own sketch: merged, it must be exactly the union's percentile
    parts = [(tuple(quantile_sketch(unweighted(r))), len(r)) for r in rows]
    union = sorted(round(v, 3) for r in rows for v in r)
    assert merged_percentile(parts, fraction) == percentile(union, fraction)
