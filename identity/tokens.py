"""Join tokens: one-time, short-lived, bound to a host and a set of services.

A token reads `vmesh1.<id>.<secret>.<pin>`; the CA keeps only a hash of the
secret. The pin is the SHA-256 of the trust anchor's public key, so a joining
host can check it talks to the right CA before it trusts anything it is sent.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from identity.errors import Rejection

PREFIX = "vmesh1"


@dataclass(frozen=True, slots=True)
class JoinToken:
    """The parts of a token as the joining host holds it."""

    token_id: str
    secret: str
    anchor_pin: str

    def __str__(self) -> str:
        return f"{PREFIX}.{self.token_id}.{self.secret}.{self.anchor_pin}"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """What the CA stores about a token."""

    token_id: str
    secret_hash: str
    host: str
    services: tuple[str, ...]
    created_at: float
    expires_at: float
    used_at: float | None = None
    revoked: bool = False

    def state(self, now: float) -> str:
        """`valid`, `used`, `revoked` or `expired`, as `token list` shows it."""
        if self.revoked:
            return "revoked"
        if self.used_at is not None:
            return "used"
        if now >= self.expires_at:
            return "expired"
        return "valid"


def anchor_pin(anchor: x509.Certificate) -> str:
    """`sha256-<hex>` of the anchor's SubjectPublicKeyInfo."""
    spki = anchor.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256-" + hashlib.sha256(spki).hexdigest()


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(pin: str) -> JoinToken:
    """A fresh token with a random id and a 256-bit secret."""
    return JoinToken(secrets.token_hex(6), secrets.token_urlsafe(32), pin)


def parse_token(text: str) -> JoinToken:
    """Split a token into its parts; Rejection(`token.malformed`) when it is not one."""
    parts = text.strip().split(".")
    if len(parts) != 4 or parts[0] != PREFIX or not all(parts[1:]):
        raise Rejection(
            "token.malformed", "expected a token of the form vmesh1.<id>.<secret>.<pin>"
        )
    return JoinToken(parts[1], parts[2], parts[3])


def check_token(
    record: TokenRecord | None, token: JoinToken, *, host: str, service: str, now: float
) -> None:
    """Raise a Rejection unless `token` lets `host` join as `service` at `now`."""
    if record is None or not hmac.compare_digest(record.secret_hash, hash_secret(token.secret)):
        raise Rejection(
            "token.unknown", "no such token (check for typos, or create a new one)", 401
        )
    if record.revoked:
        raise Rejection("token.revoked", f"token {record.token_id} was revoked", 401)
    if record.used_at is not None:
        raise Rejection("token.already_used", f"token {record.token_id} was used already", 401)
    if now >= record.expires_at:
        raise Rejection("token.expired", f"token {record.token_id} has expired", 401)
    if host != record.host:
        raise Rejection(
            "token.wrong_host",
            f"token {record.token_id} is for host {record.host}, not {host}",
            403,
        )
    if service not in record.services:
        raise Rejection(
            "token.service_not_allowed",
            f"token {record.token_id} allows {', '.join(record.services)}, not {service}",
            403,
        )
