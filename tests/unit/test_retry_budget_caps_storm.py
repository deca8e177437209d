"""The retry budget admits retries up to its ratio of live traffic plus a small reserve."""

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.retry import RetryBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_full_outage_storm_adds_at_most_ratio_plus_reserve() -> None:
    """1000 rps against a dead backend for 60 s: retries stay near 20 % plus 10/s."""
    clock = FakeClock()
    budget = RetryBudget(0.2, 10, 10.0, clock=clock)
    requests = retries = 0
    for _ in range(60_000):
        clock.now += 0.001
        budget.record_request()
        requests += 1
        for _attempt in range(3):  # every request would like three retries
            if budget.try_retry():
                retries += 1
    assert retries <= 0.2 * requests + 10 * 60 + 100  # ratio + reserve per second (+ first window)
    assert retries >= 0.17 * requests  # the budget is not needlessly stingy either
    assert budget.rejected > 2 * requests


def test_reserve_allows_retries_at_low_traffic() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.2, 10, 10.0, clock=clock)
    budget.record_request()
    admitted = sum(budget.try_retry() for _ in range(150))
    assert admitted == 100  # min_per_second * window
    clock.now += 11
    assert budget.try_retry()  # the window slid on


def test_no_ratio_and_no_reserve_admits_nothing() -> None:
    budget = RetryBudget(0.0, 0.0, 10.0, clock=FakeClock())
    budget.record_request()
    assert not budget.try_retry()
    assert repr(budget) == "<RetryBudget ratio=0.0 reserve=0 requests=1 retries=0 rejected=1>"


def count_in(times: list[float], end: float, window: float) -> int:
    return sum(1 for x in times if end - window < x <= end)


ops = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=3.0),
        st.sampled_from(["request", "retry"]),
        st.integers(min_value=1, max_value=30),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(
    ops,
    st.floats(min_value=0, max_value=1),
    st.one_of(st.just(0.0), st.floats(min_value=0, max_value=2)),
    st.floats(min_value=0.5, max_value=10),
)
def test_budget_never_admits_more_than_its_ratio(
    script: list[tuple[float, str, int]], ratio: float, min_per_second: float, window: float
) -> None:
    """For every admitted retry at t: retries in (t-window, t] <= ratio*requests + reserve."""
    clock = FakeClock()
    budget = RetryBudget(ratio, min_per_second, window, clock=clock)
    requests: list[float] = []
    retries: list[float] = []
    for delay, op, count in script:
        clock.now += delay
        for _ in range(count):
            if op == "request":
                budget.record_request()
                requests.append(clock.now)
            elif budget.try_retry():
                retries.append(clock.now)
                allowed = ratio * count_in(requests, clock.now, window) + min_per_second * window
                assert count_in(retries, clock.now, window) <= allowed + 1e-9
