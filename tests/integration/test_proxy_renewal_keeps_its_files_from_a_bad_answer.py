"""An identity service that answers a renewal 200 without a leaf for it (a certificate that
does not parse, the current leaf sent back) changes nothing on the proxy's host: the renewal
fails with the reason, the files stay as they were, and the next renewal, answered properly,
works. Storing such an answer replaced the key and certificate with a pair that could never
renew again (nor load, after a restart), and the leaf expired."""

import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from identity import castate
from tests.integration.identity_service import joined_proxy

BadAnswer = Callable[[Path], dict]


def not_a_certificate(leaf_dir: Path) -> dict:
    return {"certificate": "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                           "-----END CERTIFICATE-----\n",
            "bundle": (leaf_dir / "bundle.pem").read_text(), "serial": "1", "not_after": "-"}


def the_current_leaf_again(leaf_dir: Path) -> dict:
    return {"certificate": (leaf_dir / "cert.pem").read_text(),
            "bundle": (leaf_dir / "bundle.pem").read_text(), "serial": "1", "not_after": "-"}


def _relay(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _answer_200(tls: socket.socket, body: dict) -> None:
    request = b""
    while b"\r\n\r\n" not in request:
        request += tls.recv(65536)
    head, _, received = request.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(received) < length:
        received += tls.recv(65536)
    payload = json.dumps(body).encode()
    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))


@contextmanager
def front(service_url: str, ca_dir: Path, bad: dict) -> Iterator[str]:
    """The URL of a port in front of the identity service at `service_url`: its first
    connection is answered by a server presenting the service's own certificate, with `bad`;
    the others are relayed to the service."""
    service_port = int(service_url.rsplit(":", 1)[1])
    server_dir = castate.server_directory(castate.load(ca_dir))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server_dir / "cert.pem", server_dir / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    connections: list[socket.socket] = []

    def serve() -> None:
        with listener:
            for number in range(5):  # the renewals this test makes, and then some
                try:
                    client, _ = listener.accept()
                except OSError:
                    return
                connections.append(client)
                if number == 0:
                    with context.wrap_socket(client, server_side=True) as tls:
                        _answer_200(tls, bad)
                    continue
                upstream = socket.create_connection(("127.0.0.1", service_port))
                connections.append(upstream)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=_relay, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for connection in connections:
            connection.close()


@pytest.mark.parametrize("bad_answer", [not_a_certificate, the_current_leaf_again])
def test_a_bad_answer_to_a_renewal_is_refused_and_the_next_renewal_works(
    tmp_path: Path, bad_answer: BadAnswer
) -> None:
    leaf_dir = tmp_path / "var/lib/vmesh/api"
    ca_dir = tmp_path / "var/lib/vmesh/identity"

    with joined_proxy(tmp_path, "12s", renew_through=lambda url: front(
            url, ca_dir, bad_answer(leaf_dir))) as proxy:
        with proxy.admin() as admin:
            first = admin.get("/v1/certs").json()["chain"][0]["serial"]
        kept = {name: (leaf_dir / name).read_bytes() for name in ("key.pem", "cert.pem")}
        failed = proxy.wait_for_log(
            lambda line: line.get("msg", "").startswith("certificate renewal failed"), within=20)
        after_failure = {name: (leaf_dir / name).read_bytes() for name in kept}
        renewed = proxy.wait_for_log(lambda line: line.get("msg") == "certificate renewed",
                                     within=20)
        with proxy.admin() as admin:
            certs = admin.get("/v1/certs").json()

    assert "identity.invalid_answer" in failed["error"]
    assert after_failure == kept
    assert renewed["serial"] != first
    assert certs["chain"][0]["serial"] == renewed["serial"]
