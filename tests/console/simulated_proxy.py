"""A proxy's real admin API with simulated traffic, run as its own process by the tests.

The admin API is the proxy's own (`proxy.admin.AdminServer` over a real
`Observability`: stats, tap, logs), served on a unix socket or with mutual
TLS on a TCP port, and its certificates are real files. Only the traffic is
simulated: request events are published on the proxy's event bus at a fixed
rate, half inbound from a `client` service, half outbound to `store`. Tests
use it for what real proxies (tests/integration/mesh.py) cannot be made to
show on demand: a steady mix of failures and latencies, a remote admin API
over TCP with a chosen CA, a rate of events without a data plane's load.

Usage: python -m tests.console.simulated_proxy --name api --socket PATH --tls-dir DIR
       [--port-file FILE (mTLS on TCP instead)] [--rate N] [--ca-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import time
from pathlib import Path
from typing import Any

from cryptography import x509

from identity import castate, pki
from proxy.admin import AdminServer
from proxy.events import EventBus, RequestEvent
from proxy.observability import Observability

TD = "vmesh.local"
log = logging.getLogger("vmesh.proxy")


def cert_doc(cert: x509.Certificate, kind: str) -> dict[str, Any]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    return {"kind": kind, "subject": cert.subject.rfc4514_string(), "san": uris,
            "serial": pki.new_serial_hex(cert), "issuer": cert.issuer.rfc4514_string(),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat()}


class ProxyFacts:
    """What the simulated proxy tells its admin API (the `ProxyState` protocol)."""

    def __init__(self, service: str, tls_dir: Path) -> None:
        self.service = service
        self.tls_dir = tls_dir

    def ready(self) -> tuple[bool, str]:
        return True, "listeners up"

    def in_flight(self) -> int:
        return 0

    def in_flight_inbound(self) -> int:
        return 0

    def open_connections(self) -> int:
        return 0

    def endpoints(self) -> dict[str, Any]:
        return {"upstreams": [{"service": "store", "source": "mdns", "stale": False,
                               "updated_at": time.time(), "instances": [{"id": "store-1"}]}]}

    def certs(self) -> dict[str, Any]:
        chain = pki.load_certs((self.tls_dir / "cert.pem").read_bytes())
        anchors = pki.load_certs((self.tls_dir / "bundle.pem").read_bytes())
        leaf = chain[0]
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        return {"identity": f"spiffe://{TD}/svc/{self.service}",
                "chain": [cert_doc(leaf, "leaf"), *(cert_doc(c, "issuer") for c in chain[1:])],
                "bundle": [cert_doc(c, "anchor") for c in anchors],
                "next_renewal": (leaf.not_valid_before_utc + lifetime * 0.7).isoformat()}

    def config(self) -> dict[str, Any]:
        return {"service": self.service}


def request_event(service: str, n: int) -> RequestEvent:
    """The n-th simulated request: even ones inbound from `client`, odd ones out to `store`."""
    inbound = n % 2 == 0
    return RequestEvent(
        ts=time.time(), id=str(n), direction="inbound" if inbound else "outbound",
        src_addr="127.0.0.1:40000",
        src_id=f"spiffe://{TD}/svc/client" if inbound else None,
        dst_service=service if inbound else "store",
        dst_instance=f"{service}-1" if inbound else "store-1",
        dst_addr="127.0.0.1:8080" if inbound else "127.0.0.1:4143",
        dst_id=None if inbound else f"spiffe://{TD}/svc/store",
        tls=True, method="POST" if n % 8 in (0, 1) else "GET", authority=service,
        path=f"/{service}/items/{(n // 2) % 5}", route="default",
        status=503 if (n // 2) % 10 == 9 else 200, latency_ms=1.0 + ((n // 2) % 7) * 4.0,
        bytes_in=100, bytes_out=400, policy_decision="allow", policy_rule="default",
        trace_id=f"{service}-{n}", service=service,
    )


async def publish(bus: EventBus, service: str, rate: float) -> None:
    """Request events at `rate` per second, paced against the clock in ticks of >= 10 ms."""
    start, n = time.monotonic(), 0
    while True:
        due = int((time.monotonic() - start) * rate) + 1
        while n < due:
            bus.publish(request_event(service, n))
            n += 1
        await asyncio.sleep(max(1.0 / rate, 0.01))


async def chatter(service: str) -> None:
    """Two log lines a second, alternating info and warning."""
    n = 0
    while True:
        level = logging.INFO if n % 2 == 0 else logging.WARNING
        log.log(level, "%s log %d", service, n, extra={"n": n})
        n += 1
        await asyncio.sleep(0.5)


def write_identity(tls_dir: Path, name: str) -> None:
    """Anchor, issuer and a leaf for `name`."""
    anchor = pki.create_anchor("vmesh.local")
    issuer = pki.create_issuer(anchor, "vmesh.local")
    key = pki.generate_key()
    leaf = pki.issue_leaf(issuer, key.public_key(), spiffe_id=f"spiffe://vmesh.local/svc/{name}",
                          common_name=name, trust_domain="vmesh.local")
    pki.write_private(tls_dir / "key.pem", pki.key_pem(key))
    pki.write_file(tls_dir / "cert.pem", pki.cert_pem(leaf, issuer.cert))
    pki.write_file(tls_dir / "bundle.pem", pki.cert_pem(anchor.cert))
    # The issuer's key lets the test mint an operator certificate of the same mesh.
    pki.write_private(tls_dir / "issuer-key.pem", pki.key_pem(issuer.key))
    pki.write_file(tls_dir / "issuer.pem", pki.cert_pem(issuer.cert))


def write_identity_from_ca(tls_dir: Path, name: str, ca_dir: Path) -> None:
    """A leaf for `name` from the CA that `vmesh identity init` created (as a joined host has)."""
    ca = castate.load(ca_dir)
    key = pki.generate_key()
    leaf = pki.issue_leaf(ca.active, key.public_key(), spiffe_id=f"spiffe://{TD}/svc/{name}",
                          common_name=name, trust_domain=ca.trust_domain)
    pki.write_private(tls_dir / "key.pem", pki.key_pem(key))
    pki.write_file(tls_dir / "cert.pem", pki.cert_pem(leaf, ca.active.cert))
    pki.write_file(tls_dir / "bundle.pem", pki.cert_pem(*ca.bundle))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--socket", type=Path)
    parser.add_argument("--tls-dir", type=Path, required=True)
    parser.add_argument("--port-file", type=Path)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--ca-dir", type=Path, help="issue the leaf from this `vmesh identity` CA")
    args = parser.parse_args()
    if args.ca_dir:
        write_identity_from_ca(args.tls_dir, args.name, args.ca_dir)
    elif not (args.tls_dir / "cert.pem").exists():
        write_identity(args.tls_dir, args.name)
    bus = EventBus()
    observability = Observability.attach(bus)
    logging.getLogger().addHandler(observability.logs)
    logging.getLogger().setLevel(logging.DEBUG)
    admin = AdminServer(ProxyFacts(args.name, args.tls_dir), observability, trust_domain=TD,
                        instance_id=f"{args.name}-1", version="0.1.0")
    if args.port_file:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH,
                                             cafile=str(args.tls_dir / "bundle.pem"))
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(str(args.tls_dir / "cert.pem"), str(args.tls_dir / "key.pem"))
        port = (await admin.serve_tcp("127.0.0.1", 0, context)).getsockname()[1]
        pki.write_file(args.port_file, str(port).encode())
    else:
        await admin.serve_unix(args.socket)
    await asyncio.gather(publish(bus, args.name, args.rate), chatter(args.name))


if __name__ == "__main__":
    asyncio.run(main())
