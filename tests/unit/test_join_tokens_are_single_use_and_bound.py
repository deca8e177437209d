"""Join token rules, without a CA process."""

import pytest

from identity.errors import Rejection
from identity.tokens import TokenRecord, check_token, hash_secret, new_token, parse_token


def _record(token, **overrides) -> TokenRecord:
    fields = dict(
        token_id=token.token_id,
        secret_hash=hash_secret(token.secret),
        host="h1",
        services=("api", "web"),
        created_at=0.0,
        expires_at=100.0,
    )
    return TokenRecord(**{**fields, **overrides})


def _reason(record, token, host="h1", service="api", now=50.0) -> str | None:
    try:
        check_token(record, token, host=host, service=service, now=now)
    except Rejection as rejection:
        return rejection.reason
    return None


def test_token_round_trips_through_text() -> None:
    token = new_token("sha256-abc")
    assert parse_token(str(token)) == token


@pytest.mark.parametrize("text", ["", "vmesh1.a.b", "vmesh2.a.b.c", "vmesh1..b.c"])
def test_malformed_tokens_are_rejected(text: str) -> None:
    with pytest.raises(Rejection) as info:
        parse_token(text)
    assert info.value.reason == "token.malformed"


def test_valid_token_passes() -> None:
    token = new_token("pin")
    assert _reason(_record(token), token) is None


@pytest.mark.parametrize(
    ("overrides", "kwargs", "reason"),
    [
        ({"used_at": 10.0}, {}, "token.already_used"),
        ({"revoked": True}, {}, "token.revoked"),
        ({}, {"now": 100.0}, "token.expired"),
        ({}, {"host": "h2"}, "token.wrong_host"),
        ({}, {"service": "db"}, "token.service_not_allowed"),
        ({"secret_hash": hash_secret("guess")}, {}, "token.unknown"),
    ],
)
def test_token_rules(overrides: dict, kwargs: dict, reason: str) -> None:
    token = new_token("pin")
    assert _reason(_record(token, **overrides), token, **kwargs) == reason


def test_unknown_token_is_rejected() -> None:
    assert _reason(None, new_token("pin")) == "token.unknown"
