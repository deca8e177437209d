"""A request whose pooled connection failed under it, no response come, may have reached the
peer's app: it goes again on a new connection only when it is safe to repeat (an idempotent
method or an Idempotency-Key) and its body can be sent again, as Go's net/http decides."""

import pytest

from proxy.retry import resend_on_new_connection


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"])
def test_an_idempotent_request_goes_again(method: str) -> None:
    assert resend_on_new_connection(method, has_idempotency_key=False, body_repeatable=True)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_request_that_may_not_be_repeated_does_not(method: str) -> None:
    assert not resend_on_new_connection(method, has_idempotency_key=False, body_repeatable=True)


def test_an_idempotency_key_makes_a_post_safe_to_repeat() -> None:
    assert resend_on_new_connection("POST", has_idempotency_key=True, body_repeatable=True)


@pytest.mark.parametrize(("method", "has_idempotency_key"), [("PUT", False), ("POST", True)])
def test_a_body_already_streamed_away_never_goes_again(
    method: str, has_idempotency_key: bool
) -> None:
    assert not resend_on_new_connection(method, has_idempotency_key, body_repeatable=False)
