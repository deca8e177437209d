"""The token bucket that paces Consul's blocking-query loops: two quick queries, then one per
interval while answers keep coming, and two quick ones again after a quiet spell."""

from vm_mesh.token_bucket import TokenBucket


def test_two_at_once_then_one_per_interval() -> None:
    bucket = TokenBucket(interval_s=1.0, burst=2, now=100.0)
    assert [bucket.delay(100.0), bucket.delay(100.0)] == [0.0, 0.0]
    assert bucket.delay(100.0) == 1.0
    # the caller waited that second and its query answered at once: the next waits a second
    assert bucket.delay(101.0) == 1.0
    assert bucket.delay(102.0) == 1.0


def test_a_quiet_spell_refills_the_burst_and_no_more() -> None:
    bucket = TokenBucket(interval_s=1.0, burst=2, now=0.0)
    for _ in range(3):
        bucket.delay(0.0)
    assert bucket.delay(60.0) == 0.0  # a blocking query that lasted its whole wait
    assert bucket.delay(60.0) == 0.0
    assert bucket.delay(60.0) == 1.0  # a minute of quiet is worth two tokens, not sixty


def test_no_interval_never_waits() -> None:
    bucket = TokenBucket(interval_s=0.0)
    assert {bucket.delay(0.0) for _ in range(5)} == {0.0}
