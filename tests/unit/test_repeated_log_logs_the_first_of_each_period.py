"""A repeated event is logged once per period and key; the repeats are counted and the
period's end tells how many there were, then the next one is logged again."""

from proxy.repeated_log import RepeatedLog


def test_the_first_of_each_key_is_logged_and_the_repeats_are_counted_until_close() -> None:
    repeated = RepeatedLog()
    assert [repeated.first("gateway.not_tls") for _ in range(4)] == [True, False, False, False]
    assert repeated.first("gateway.other_site") is True
    assert sorted(repeated.open_keys()) == ["gateway.not_tls", "gateway.other_site"]

    assert repeated.close("gateway.not_tls") == 3
    assert repeated.close("gateway.other_site") == 0
    assert repeated.close("gateway.not_tls") == 0  # no period open
    assert repeated.open_keys() == []
    assert repeated.first("gateway.not_tls") is True  # a new period
