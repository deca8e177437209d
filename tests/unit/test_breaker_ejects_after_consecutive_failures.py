"""Failure accrual: consecutive failures eject with growing, jittered backoff, then one probe."""

import random

from proxy.breaker import BreakerSettings, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


SETTINGS = BreakerSettings(consecutive_failures=3, min_s=1.0, max_s=8.0, jitter=0.5)


def _breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(SETTINGS, clock, random.Random(3))


def test_failures_below_the_threshold_keep_the_endpoint() -> None:
    breaker = _breaker(Clock())
    breaker.on_failure()
    breaker.on_failure()
    assert breaker.available() and breaker.state == "closed"


def test_a_success_resets_the_count() -> None:
    breaker = _breaker(Clock())
    for _ in range(2):
        breaker.on_failure()
    breaker.on_success()
    breaker.on_failure()
    breaker.on_failure()
    assert breaker.state == "closed"


def test_consecutive_failures_eject_until_the_backoff_ends() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.on_failure()
    assert breaker.state == "open" and not breaker.available()
    backoff = breaker.open_until - clock.now
    assert 0.5 <= backoff <= 1.0  # min_s with up to 50 % jitter taken off
    clock.now = breaker.open_until
    assert breaker.available() and breaker.state == "half-open"


def test_half_open_allows_one_probe_at_a_time() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.on_failure()
    clock.now = breaker.open_until
    assert breaker.available()
    breaker.on_request()
    assert not breaker.available()


def test_a_failed_probe_ejects_again_for_longer() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    backoffs = []
    for _ in range(3):
        breaker.on_failure()
    for _ in range(5):
        backoffs.append(breaker.open_until - clock.now)
        clock.now = breaker.open_until
        assert breaker.available()
        breaker.on_request()
        breaker.on_failure()
    assert breaker.state == "open"
    # Each ejection's upper bound doubles up to max_s; jitter only takes off up to half.
    for n, backoff in enumerate(backoffs):
        ceiling = min(SETTINGS.max_s, SETTINGS.min_s * 2**n)
        assert ceiling / 2 <= backoff <= ceiling


def test_a_successful_probe_readmits_the_endpoint() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.on_failure()
    clock.now = breaker.open_until
    breaker.available()
    breaker.on_request()
    breaker.on_success()
    assert breaker.state == "closed" and breaker.available()
    assert breaker.describe()["ejections"] == 0


def test_a_probe_that_ends_without_an_outcome_reopens_and_probes_again() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.on_failure()
    clock.now = breaker.open_until
    assert breaker.available()  # half-open: the probe goes
    breaker.on_request()
    assert not breaker.available()  # one probe at a time
    breaker.on_abandoned()  # it timed out
    assert breaker.state == "open" and not breaker.available()
    clock.now = breaker.open_until
    assert breaker.available()  # the next backoff ended: another probe, not shut out for good
    breaker.on_request()
    breaker.on_success()
    assert breaker.state == "closed"


def test_a_request_abandoned_while_closed_changes_nothing() -> None:
    breaker = _breaker(Clock())
    breaker.on_failure()
    breaker.on_request()
    breaker.on_abandoned()  # its client left: not the instance's failure
    assert breaker.state == "closed" and breaker.failures == 1


def test_failures_of_requests_already_in_flight_do_not_lengthen_the_ejection() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(20):  # the instance died with 20 requests in flight
        breaker.on_failure()
    assert breaker.ejections == 1
    assert 0 < breaker.open_until - clock.now <= SETTINGS.min_s
