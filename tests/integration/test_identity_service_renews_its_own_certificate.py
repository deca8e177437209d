"""The identity service renews the certificate it presents before it expires: a service that
runs longer than that certificate's lifetime still answers every proxy's renewal, whose
handshake would otherwise fail on an expired server certificate (and every leaf of the mesh
would expire a day later)."""

import socket
import ssl
import time
from datetime import timedelta
from pathlib import Path

import httpx

from tests.integration.identity_service import identity_server


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
