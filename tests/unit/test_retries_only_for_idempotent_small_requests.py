"""Which failed attempts a route retries: opt-in conditions, idempotent methods, small bodies."""

import random

from proxy.retry import CONNECT_FAILURE, RESET, RetryPolicy
from proxy.route import RequestFacts, RouteTable
from tests.unit.policy_helpers import policy


def retry_policy(spec: str) -> RetryPolicy:
    text = f"kind: HTTPRoute\nname: r\nservice: s\nrules:\n  - retry: {spec}\n"
    target = RouteTable("s", policy(text)).match(RequestFacts.build("GET", "/"))
    assert target.retry is not None
    return RetryPolicy(target.retry)


def test_retries_configured_statuses_and_connect_failures() -> None:
    retry = retry_policy("{on: [gateway-error, connect-failure, 429]}")
    assert retry.should_retry(0, "GET", 0, 503)
    assert retry.should_retry(0, "GET", 0, 429)
    assert retry.should_retry(0, "GET", 0, CONNECT_FAILURE)
    assert not retry.should_retry(0, "GET", 0, 500)
    assert not retry.should_retry(0, "GET", 0, RESET)
    assert not retry.should_retry(0, "GET", 0, 200)


def test_only_idempotent_methods_by_default() -> None:
    retry = retry_policy("{on: [5xx]}")
    for method in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS"):
        assert retry.should_retry(0, method, 0, 500)
    assert not retry.should_retry(0, "POST", 0, 500)
    assert not retry.should_retry(0, "PATCH", 0, 500)
    explicit = retry_policy("{on: [5xx], methods: [POST]}")
    assert explicit.should_retry(0, "POST", 10, 500)
    assert not explicit.should_retry(0, "GET", 10, 500)


def test_bodies_over_64_kib_or_unknown_are_not_retried() -> None:
    retry = retry_policy("{on: [5xx], methods: [PUT]}")
    assert retry.should_retry(0, "PUT", 64 * 1024, 502)
    assert not retry.should_retry(0, "PUT", 64 * 1024 + 1, 502)
    assert not retry.should_retry(0, "PUT", None, 502)


def test_attempts_bound_the_retries() -> None:
    retry = retry_policy("{on: [5xx], attempts: 2}")
    assert retry.should_retry(1, "GET", 0, 500)
    assert not retry.should_retry(2, "GET", 0, 500)


def test_backoff_is_jittered_under_an_exponential_ceiling() -> None:
    retry = retry_policy("{on: [5xx], backoff: {base: 10ms, max: 35ms}}")
    rng = random.Random(7)
    for retries_done, ceiling in [(0, 0.01), (1, 0.02), (2, 0.035), (6, 0.035)]:
        waits = [retry.backoff(retries_done, rng) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8
