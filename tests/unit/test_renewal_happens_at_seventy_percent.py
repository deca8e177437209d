"""When leaves are renewed and how loud a failing renewal is."""

import logging
import random

from identity.renewal import expiry_level, renewal_time, retry_delay


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
    assert retry_delay(0, 0, 10_000) == 1.0
    assert retry_delay(10, 0, 10_000) == 60.0
    assert retry_delay(10, 990, 1000) == 1.0


def test_retry_waits_a_minute_after_any_number_of_failures() -> None:
    # a week-long leaf whose CA stays down for a day: ~1,400 failed attempts at a minute each
    # (2.0 ** 1024 overflowed, which ended the renewer for good)
    week = 7 * 86400.0
    assert [retry_delay(attempt, 0, week) for attempt in (1023, 1024, 100_000)] == [60.0] * 3
