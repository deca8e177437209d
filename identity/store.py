"""The CA's sqlite database: join tokens, every issued certificate, revoked hosts."""

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from identity.tokens import TokenRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    token_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    host TEXT NOT NULL,
    services TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    host TEXT NOT NULL,
    issuer_serial TEXT NOT NULL,
    not_after REAL NOT NULL,
    issued_at REAL NOT NULL,
    token_id TEXT
);
CREATE TABLE IF NOT EXISTS revoked_hosts (
    host TEXT PRIMARY KEY,
    revoked_at REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """One line of the issuance log."""

    serial: str
    identity: str
    host: str
    issuer_serial: str
    not_after: float
    issued_at: float
    token_id: str | None


class Store:
    """Thread-safe access to the CA database (one short transaction per call)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = sqlite3.connect(self._path, timeout=10)
            try:
                with db:
                    yield db
            finally:
                db.close()

    def add_token(self, record: TokenRecord) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, NULL, 0)",
                (
                    record.token_id,
                    record.secret_hash,
                    record.host,
                    ",".join(record.services),
                    record.created_at,
                    record.expires_at,
                ),
            )

    def token(self, token_id: str) -> TokenRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM tokens WHERE token_id = ?", (token_id,)).fetchone()
        return _token(row) if row else None

    def tokens(self) -> list[TokenRecord]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM tokens ORDER BY created_at").fetchall()
        return [_token(row) for row in rows]

    def revoke_token(self, token_id: str) -> bool:
        with self._connect() as db:
            cursor = db.execute("UPDATE tokens SET revoked = 1 WHERE token_id = ?", (token_id,))
        return cursor.rowcount == 1

    def record_issued(self, cert: IssuedCert) -> None:
        with self._connect() as db:
            _insert_issued(db, cert)

    def spend_token(self, cert: IssuedCert) -> bool:
        """Mark `cert`'s token used and record `cert`, both or neither (one transaction):
        False when another request used the token first; an error leaves the token usable."""
        with self._connect() as db:
            cursor = db.execute(
                "UPDATE tokens SET used_at = ? WHERE token_id = ? AND used_at IS NULL",
                (cert.issued_at, cert.token_id),
            )
            if cursor.rowcount != 1:
                return False
            _insert_issued(db, cert)
        return True

    def issued(self, serial: str) -> IssuedCert | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM certificates WHERE serial = ?", (serial,)).fetchone()
        return IssuedCert(*row) if row else None

    def all_issued(self) -> list[IssuedCert]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM certificates ORDER BY issued_at").fetchall()
        return [IssuedCert(*row) for row in rows]

    def revoke_host(self, host: str, now: float) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO revoked_hosts VALUES (?, ?)", (host, now))

    def host_revoked(self, host: str) -> bool:
        with self._connect() as db:
            row = db.execute("SELECT 1 FROM revoked_hosts WHERE host = ?", (host,)).fetchone()
        return row is not None


def _insert_issued(db: sqlite3.Connection, cert: IssuedCert) -> None:
    db.execute(
        "INSERT INTO certificates VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            cert.serial,
            cert.identity,
            cert.host,
            cert.issuer_serial,
            cert.not_after,
            cert.issued_at,
            cert.token_id,
        ),
    )


def _token(row: tuple) -> TokenRecord:
    token_id, secret_hash, host, services, created_at, expires_at, used_at, revoked = row
    return TokenRecord(
        token_id=token_id,
        secret_hash=secret_hash,
        host=host,
        services=tuple(s for s in services.split(",") if s),
        created_at=created_at,
        expires_at=expires_at,
        used_at=used_at,
        revoked=bool(revoked),
    )
