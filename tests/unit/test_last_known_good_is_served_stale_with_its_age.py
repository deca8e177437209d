"""The saved endpoint set round-trips, is served stale with its age, and loses to fresh sets."""

import pytest

from vm_mesh.discovery.base import EndpointSet, Instance
from vm_mesh.discovery.lastknown import SOURCE, age_seconds, choose, decode, encode

API = (Instance("api", "api-1", "127.0.0.1", 4143, admin_port=4191, zone="a"),)
FRESH = EndpointSet("api", API, source="consul", updated_at=1_000.0)


def test_saved_set_comes_back_stale_from_last_known_good() -> None:
    restored = decode(encode(FRESH))
    assert restored.instances == API
    assert restored.stale and restored.source == SOURCE
    assert restored.updated_at == 1_000.0
    assert age_seconds(restored, now=1_090.0) == 90.0


@pytest.mark.parametrize("data", [b"{", b"[]", b'{"version": 99}', b'{"version": 1}'])
def test_unreadable_files_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode(data)


def test_fresh_sets_win_over_the_saved_one() -> None:
    saved = decode(encode(FRESH))
    empty_but_fresh = EndpointSet("api", (), source="consul", updated_at=2_000.0)
    assert choose(empty_but_fresh, saved) is empty_but_fresh  # zero instances is an answer


def test_backend_that_never_answered_gives_way_to_the_saved_set() -> None:
    saved = decode(encode(FRESH))
    never = EndpointSet("api", (), source="consul", updated_at=0.0, stale=True)
    assert choose(never, saved) == saved
    assert choose(never, None) is never
    assert age_seconds(never) == 0.0


def test_the_saved_set_served_for_a_failing_backend_says_why_it_fails() -> None:
    failing = EndpointSet("api", (), source="consul", updated_at=0.0, stale=True,
                          error="consul: [Errno 111] Connection refused")
    served = choose(failing, decode(encode(FRESH)))
    assert (served.instances, served.source, served.stale) == (API, SOURCE, True)
    assert served.error == "consul: [Errno 111] Connection refused"
    assert decode(encode(served)).error == ""  # what is saved is the set, not the failure


def test_backend_stale_set_with_instances_keeps_its_own_age() -> None:
    stale = EndpointSet("api", API, source="consul", updated_at=1_500.0, stale=True)
    served = choose(stale, decode(encode(FRESH)))
    assert served.source == SOURCE and served.stale
    assert (served.instances, served.updated_at) == (API, 1_500.0)
