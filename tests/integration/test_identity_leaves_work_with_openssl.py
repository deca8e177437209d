"""Leaves from the running identity service verify and handshake with an independent TLS stack."""

import asyncio
import socket
import subprocess
import time
from pathlib import Path

import pytest

from identity.client import obtain
from tests.integration.identity_service import running_identity_service, vmesh
from tests.support import free_port, require_tool


def _join(service, host: str, name: str, directory: Path) -> None:
    token = vmesh(
        service.root, "identity", "token", "create", "--host", host, "--services", name
    ).stdout.strip()
    asyncio.run(obtain(service.url, token, host=host, service=name, directory=directory))


def _split_chain(directory: Path) -> None:
    text = (directory / "cert.pem").read_text()
    end = "-----END CERTIFICATE-----\n"
    leaf, issuer = (part + end for part in text.split(end)[:2])
    (directory / "leaf.pem").write_text(leaf)
    (directory / "issuer.pem").write_text(issuer)


@pytest.fixture
def service(tmp_path: Path):
    vmesh(tmp_path, "identity", "init")
    with running_identity_service(tmp_path) as running:
        yield running


def test_openssl_verifies_joined_leaf(service, tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    leaf_dir = tmp_path / "api"
    _join(service, "h1", "api", leaf_dir)
    _split_chain(leaf_dir)
    result = subprocess.run(
        [openssl, "verify", "-CAfile", "bundle.pem", "-untrusted", "issuer.pem", "leaf.pem"],
        cwd=leaf_dir,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "leaf.pem: OK" in result.stdout


def test_openssl_mutual_tls_handshake_with_our_leaves(service, tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    server_dir, client_dir = tmp_path / "web", tmp_path / "api"
    _join(service, "h1", "web", server_dir)
    _join(service, "h2", "api", client_dir)
    port = free_port()
    server = subprocess.Popen(
        [
            openssl,
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            "cert.pem",
            "-cert_chain",
            "cert.pem",
            "-key",
            "key.pem",
            "-CAfile",
            "bundle.pem",
            "-Verify",
            "2",
            "-verify_return_error",
            "-www",
        ],
        cwd=server_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        client = subprocess.run(
            [
                openssl,
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-cert",
                client_dir / "cert.pem",
                "-cert_chain",
                client_dir / "cert.pem",
                "-key",
                client_dir / "key.pem",
                "-CAfile",
                client_dir / "bundle.pem",
                "-verify_return_error",
                "-brief",
                "-ign_eof",
            ],
            input="GET / HTTP/1.0\r\n\r\n",
            capture_output=True,
            text=True,
            timeout=20,
        )
    finally:
        server.kill()
        server.wait(timeout=10)
    assert client.returncode == 0, client.stderr
    assert "Verification: OK" in client.stderr
    # the server saw and verified our client's SPIFFE identity
    assert "CN=api" in client.stdout.replace(" ", ""), client.stdout[-1500:]


def test_leaves_of_old_and_new_issuer_verify_during_rotation(service, tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    _join(service, "h1", "api", old_dir)
    vmesh(service.root, "identity", "rotate")
    service.stop()
    with running_identity_service(service.root) as rotated:
        _join(rotated, "h2", "web", new_dir)
    bundle = service.root / "var/lib/vmesh/identity/bundle.pem"
    assert bundle.read_text().count("BEGIN CERTIFICATE") == 2
    issuers = set()
    for directory in (old_dir, new_dir):
        _split_chain(directory)
        issuers.add((directory / "issuer.pem").read_text())
        result = subprocess.run(
            [openssl, "verify", "-CAfile", bundle, "-untrusted", "issuer.pem", "leaf.pem"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
    assert len(issuers) == 2  # the new leaf really comes from the new issuer
