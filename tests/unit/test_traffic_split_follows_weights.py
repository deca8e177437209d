"""Weighted backends get their share of traffic; mirrors sample their percentage of requests."""

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.mirror import MirrorSampler
from proxy.split import WeightedSplit
from tests.unit.policy_helpers import policy
from vm_mesh.policy.model import Backend

SPLIT = """\
kind: HTTPRoute
name: canary
service: api
rules:
  - backends:
      - {service: api-v1, weight: 90}
      - {service: api-v2, weight: 10}
      - {service: api-off, weight: 0}
"""


def backends() -> tuple[Backend, ...]:
    return policy(SPLIT).routes_for("api")[0].doc.rules[0].backends


def test_ninety_ten_split_over_ten_thousand_requests() -> None:
    split = WeightedSplit(backends(), random.Random(1))
    counts = Counter(split.choose().service for _ in range(10_000))
    assert set(counts) == {"api-v1", "api-v2"}  # a zero weight never wins
    assert abs(counts["api-v2"] - 1000) <= 150  # 5 standard deviations of a binomial
    assert repr(split) == "<WeightedSplit api-v1=90 api-v2=10>"


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=6), st.integers())
def test_split_only_picks_backends_with_weight(weights: list[int], seed: int) -> None:
    chosen = [Backend(service=f"b{i}", weight=w) for i, w in enumerate(weights)]
    if not any(weights):
        with pytest.raises(ValueError, match="weight above 0"):
            WeightedSplit(chosen)
        return
    split = WeightedSplit(chosen, random.Random(seed))
    for _ in range(20):
        assert split.choose().weight > 0


MIRROR = """\
kind: Mirror
service: api
to: api-shadow
percent: 5
"""


def test_mirror_samples_its_percentage() -> None:
    sampler = MirrorSampler.from_policy(policy(MIRROR).mirrors_for("api"), random.Random(3))
    copies = sum(len(sampler.sample(body_size=0)) for _ in range(10_000))
    assert abs(copies - 500) <= 110
    assert {t.to for t in sampler.targets} == {"api-shadow"}


def test_mirror_skips_bodies_it_cannot_replay() -> None:
    text = MIRROR.replace("percent: 5", "percent: 100")
    sampler = MirrorSampler.from_policy(policy(text).mirrors_for("api"))
    assert [t.to for t in sampler.sample(body_size=10)] == ["api-shadow"]
    assert sampler.sample(body_size=None) == ()
    assert sampler.sample(body_size=64 * 1024 + 1) == ()
    assert not MirrorSampler.from_policy(policy(text).mirrors_for("web"))
