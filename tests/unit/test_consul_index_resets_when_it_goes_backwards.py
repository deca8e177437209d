"""Consul blocking-query index rules: follow forward, restart from 0 backwards, never below 1."""

import pytest

from vm_mesh.discovery.consul import ConsulSettings, backoff_delay, next_index


def test_index_moves_forward_with_the_agent() -> None:
    assert next_index(0, "12") == 12
    assert next_index(12, 12) == 12  # a timeout answers the same index: no change implied
    assert next_index(12, 40) == 40


def test_index_going_backwards_restarts_from_zero() -> None:
    assert next_index(40, 7) == 0


@pytest.mark.parametrize("returned", [0, "0", None, "", -3])
def test_index_below_one_is_treated_as_one(returned: object) -> None:
    assert next_index(0, returned) == 1  # type: ignore[arg-type]


def test_unparseable_index_starts_over() -> None:
    assert next_index(40, "garbage") == 0


def test_backoff_windows_double_from_the_minimum_up_to_the_cap() -> None:
    settings = ConsulSettings(backoff_min_s=0.5, backoff_max_s=4.0)
    windows = [0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for failures, window in enumerate(windows):
        assert all(0.0 <= backoff_delay(failures, settings) <= window for _ in range(200))
