"""The inbound proxy applies the same strict framing to mesh callers: refused, closed, and
the app never sees the request."""

import socket
import ssl

import httpx
import pytest

from tests.integration.mesh import Mesh
from tests.integration.processes import start_backend
from tests.integration.test_malformed_requests_are_refused import CASES

SELECTED = ["content-length and chunked", "duplicate differing content-length", "obs-fold",
            "bare CR", "transfer-encoding gzip, chunked", "two hosts",
            "host port that is no number", "host port out of range",
            "host with a character no name has"]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("mesh")
    mesh = Mesh(root)
    backend = start_backend("web")
    web = mesh.start_proxy("web", backend.port)
    caller = mesh.issue("front")  # a valid mesh identity, used by a raw TLS client
    context = ssl.create_default_context(cafile=str(caller / "bundle.pem"))
    context.check_hostname = False
    context.load_cert_chain(caller / "cert.pem", caller / "key.pem")
    context.set_alpn_protocols(["http/1.1"])
    yield web, backend, context
    mesh.stop()
    backend.stop()


def _requests_seen(backend) -> int:
    return httpx.get(f"http://127.0.0.1:{backend.port}/_stats").json()["requests"]


@pytest.mark.parametrize("case", SELECTED)
def test_malformed_request_from_a_mesh_peer_is_refused(mesh, case: str) -> None:
    web, backend, context = mesh
    payload, status, reason = CASES[case]
    before = _requests_seen(backend)
    with socket.create_connection(("127.0.0.1", web.ports["inbound"]), timeout=10) as raw, \
            context.wrap_socket(raw) as tls:
        tls.sendall(payload)
        received = b""
        while chunk := tls.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 %d " % status), received[:200]
    assert b"vmesh-error: " + reason.encode() in received
    assert _requests_seen(backend) == before
