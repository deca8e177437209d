"""The identity service renews the certificate it presents before it expires: a service that
runs longer than that certificate's lifetime still answers every proxy's renewal, whose
handshake would otherwise fail on an expired server certificate (and every leaf of the mesh
would expire a day later)."""

import logging
import socket
import ssl
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.integration.identity_service import identity_server
from tests.integration.mesh import wait_until


def presented_not_after(port: int, trusted: ssl.SSLContext) -> float:
    """When the certificate the service presents now expires (the handshake verifies it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            trusted.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        cert = tls.getpeercert()
    assert cert is not None and isinstance(cert["notAfter"], str)
    return float(ssl.cert_time_to_seconds(cert["notAfter"]))


def test_a_service_outliving_its_certificate_still_answers(tmp_path: Path) -> None:
    directory = tmp_path / "identity"
    with identity_server(directory, certificate_lifetime=timedelta(seconds=4)) as server:
        port = server.server_address[1]
        trusted = ssl.create_default_context(cafile=str(directory / "bundle.pem"))
        first = presented_not_after(port, trusted)
        time.sleep(max(0.0, first - time.time()) + 1.0)  # until the first one has expired

        answer = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trusted, timeout=10)

        assert answer.status_code == 200
        assert presented_not_after(port, trusted) > first


def renewal_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records
            if getattr(record, "reason", None) == "tls.certificate_renewal_failed"]


def refuse_the_key_file(directory: Path) -> Path:
    """Have the writing of the service's new key fail, as on a full disk: a directory takes
    the key file's place. Returns that directory, to remove."""
    key = directory / "server" / "key.pem"
    key.unlink()
    key.mkdir()
    return key


def test_a_certificate_the_service_cannot_renew_is_logged_once_and_the_current_one_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "identity"
    with identity_server(directory, certificate_lifetime=timedelta(seconds=8)) as server:
        port = server.server_address[1]
        trusted = ssl.create_default_context(cafile=str(directory / "bundle.pem"))
        presented = [presented_not_after(port, trusted)]
        refuse_the_key_file(directory)

        def renewal_failed() -> bool:  # each handshake past half its life tries to renew it
            presented.append(presented_not_after(port, trusted))
            return bool(renewal_failures(caplog))

        wait_until(renewal_failed, within=20, what="a failed renewal")
        presented += [presented_not_after(port, trusted) for _ in range(5)]
        answer = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trusted, timeout=10)

    failures = renewal_failures(caplog)
    assert answer.status_code == 200
    assert set(presented) == {presented[0]}
    assert len(failures) == 1
    assert failures[0].levelno == logging.ERROR
    assert "Is a directory" in failures[0].detail


def test_a_certificate_the_service_could_not_renew_is_renewed_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "identity"
    with identity_server(directory, certificate_lifetime=timedelta(seconds=8),
                         certificate_retry=timedelta(seconds=0.5)) as server:
        port = server.server_address[1]
        trusted = ssl.create_default_context(cafile=str(directory / "bundle.pem"))
        first = presented_not_after(port, trusted)
        refused = refuse_the_key_file(directory)
        wait_until(lambda: presented_not_after(port, trusted) == first
                   and bool(renewal_failures(caplog)), within=20, what="a failed renewal")
        refused.rmdir()  # the disk has room again

        wait_until(lambda: presented_not_after(port, trusted) > first, within=20,
                   what="a renewed certificate")
