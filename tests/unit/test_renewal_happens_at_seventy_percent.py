"""When leaves are renewed and how loud a failing renewal is."""

import logging
import random

from identity.renewal import expiry_level, renewal_time, retry_ceiling, retry_delay


def test_renewal_is_at_seventy_percent_minus_jitter() -> None:
    rng = random.Random(7)
    times = [renewal_time(0.0, 1000.0, rng=rng) for _ in range(200)]
    assert all(650.0 <= t <= 700.0 for t in times)
    assert max(times) - min(times) > 10  # spread, not one instant for the whole fleet


def test_failing_renewal_grows_louder_towards_expiry() -> None:
    assert expiry_level(700, 0, 1000) == logging.WARNING
    assert expiry_level(900, 0, 1000) == logging.ERROR
    assert expiry_level(1001, 0, 1000) == logging.CRITICAL


def test_retry_backoff_is_bounded_by_time_left() -> None:
    assert retry_ceiling(0, 0, 10_000) == 1.0
    assert retry_ceiling(10, 0, 10_000) == 60.0
    assert retry_ceiling(10, 990, 1000) == 1.0


def test_retry_waits_at_most_a_minute_after_any_number_of_failures() -> None:
    # a week-long leaf whose CA stays down for a day: ~1,400 failed attempts, up to a minute
    # apart (2.0 ** 1024 overflowed, which ended the renewer for good)
    week = 7 * 86400.0
    assert [retry_ceiling(attempt, 0, week) for attempt in (1023, 1024, 100_000)] == [60.0] * 3
    assert 0.0 <= retry_delay(100_000, 0, week) <= 60.0


def test_retries_after_an_outage_are_spread_over_the_backoff() -> None:
    # a fleet whose CA has been down a while: each proxy's next retry falls anywhere in the
    # minute (full jitter), not all of them at the same second
    rng = random.Random(11)
    week = 7 * 86400.0
    delays = [retry_delay(20, 0, week, rng=rng) for _ in range(1000)]
    assert all(0.0 <= d <= 60.0 for d in delays)
    assert max(delays) - min(delays) > 50
    assert len({round(d) for d in delays}) > 50  # most seconds of the minute taken


def test_jittered_retries_keep_within_the_backoff_and_the_time_left() -> None:
    rng = random.Random(12)
    assert all(0.0 <= retry_delay(0, 0, 10_000, rng=rng) <= 1.0 for _ in range(100))
    assert all(0.0 <= retry_delay(3, 0, 10_000, rng=rng) <= 8.0 for _ in range(100))
    assert all(0.0 <= retry_delay(10, 990, 1000, rng=rng) <= 1.0 for _ in range(100))
    assert all(0.0 <= retry_delay(100_000, 0, 10_000, rng=rng) <= 60.0 for _ in range(100))
