"""A stand-in admin API server, run as its own process by the console tests.

It speaks the admin API contract of DESIGN.md (health, /v1/stats,
/v1/certs from real certificate files, /v1/endpoints, NDJSON /v1/tap and
/v1/logs streams) over a real unix socket, or over real mutual TLS on a TCP
port. It exists only until the proxy and its admin API (branches `proxy`
and `observe`) are on main; the console tests then start real proxies.

Usage: python -m tests.console.admin_standin --name api --socket PATH
       [--tls-dir DIR --port-file FILE] [--rate N] [--expired-leaf]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
from cryptography import x509

from identity import pki


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


class StandIn:
    """The documents and streams of one proxy named `name`."""

    def __init__(self, name: str, tls_dir: Path, rate: float) -> None:
        self.name, self.tls_dir, self.rate = name, tls_dir, rate
        self.started = time.time()
        self.sent = 0

    def certs(self) -> dict[str, Any]:
        chain = pki.load_certs((self.tls_dir / "cert.pem").read_bytes())
        anchors = pki.load_certs((self.tls_dir / "bundle.pem").read_bytes())
        leaf = chain[0]
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        return {"identity": f"spiffe://vmesh.local/svc/{self.name}",
                "chain": [cert_doc(leaf, "leaf"), *(cert_doc(c, "issuer") for c in chain[1:])],
                "bundle": [cert_doc(c, "anchor") for c in anchors],
                "next_renewal": (leaf.not_valid_before_utc + lifetime * 0.7).isoformat()}

    def stats(self) -> dict[str, Any]:
        elapsed = max(1.0, time.time() - self.started)
        return {"service": self.name, "instance": f"{self.name}-1", "version": "0.1.0",
                "window_s": 60, "tcp_open": 1,
                "routes": [{"route": "default", "service": self.name,
                            "rps": round(self.sent / elapsed, 2), "success_rate": 0.9,
                            "p50_ms": 2.0, "p95_ms": 8.0, "p99_ms": 20.0,
                            "requests": self.sent}]}

    def endpoints(self) -> dict[str, Any]:
        return {"upstreams": [{"service": "store", "source": "mdns", "stale": False,
                               "updated_at": time.time(), "instances": [{"id": "store-1"}]}]}

    def tap_event(self) -> dict[str, Any]:
        n = self.sent
        self.sent += 1
        return {"ts": time.time(), "id": f"{n}", "direction": "outbound",
                "src": {"id": None, "addr": "127.0.0.1:40000"},
                "dst": {"service": "store", "instance": "store-1", "addr": "127.0.0.1:4143",
                        "id": "spiffe://vmesh.local/svc/store"},
                "tls": True, "method": "GET" if n % 4 else "POST",
                "authority": "store", "path": f"/{self.name}/items/{n % 5}",
                "route": "default", "status": 503 if n % 10 == 9 else 200,
                "latency_ms": 1.0 + (n % 7) * 4.0, "bytes_in": 100, "bytes_out": 400,
                "retries": 0, "policy": {"decision": "allow", "rule": "default"},
                "error": None, "trace_id": f"{self.name}-{n}"}


async def serve(standin: StandIn, reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                if not data:
                    return
                continue
            if isinstance(event, h11.Request):
                await answer(standin, conn, writer, event.target.decode())
                return
            if isinstance(event, h11.ConnectionClosed):
                return
    except (ConnectionError, h11.ProtocolError, ssl.SSLError):
        return
    finally:
        writer.close()


async def answer(standin: StandIn, conn: h11.Connection, writer: asyncio.StreamWriter,
                 target: str) -> None:
    url = urlsplit(target)
    query = parse_qs(url.query)
    headers = [("date", formatdate(usegmt=True)), ("connection", "close")]
    documents = {"/ready": {"ready": True}, "/live": {"live": True},
                 "/v1/config": {"service": standin.name}}
    if url.path in documents or url.path in ("/v1/stats", "/v1/certs", "/v1/endpoints"):
        body = {"/v1/stats": standin.stats, "/v1/certs": standin.certs,
                "/v1/endpoints": standin.endpoints}.get(url.path, lambda: documents[url.path])()
        data = json.dumps(body).encode()
        writer.write(conn.send(h11.Response(status_code=200, headers=[
            *headers, ("content-type", "application/json"), ("content-length", str(len(data)))])))
        writer.write(conn.send(h11.Data(data=data)) + conn.send(h11.EndOfMessage()))
        await writer.drain()
        return
    if url.path in ("/v1/tap", "/v1/logs"):
        writer.write(conn.send(h11.Response(status_code=200, headers=[
            *headers, ("content-type", "application/x-ndjson"),
            ("transfer-encoding", "chunked")])))
        follow = url.path == "/v1/tap" or query.get("follow") == ["1"]
        # Paced against the clock in ticks of at least 10 ms, so high rates stay exact.
        rate = standin.rate if url.path == "/v1/tap" else 2.0
        tick = max(1.0 / rate, 0.01)
        start, n = time.monotonic(), 0
        while True:
            due = int((time.monotonic() - start) * rate) + 1
            lines = []
            while n < due:
                if url.path == "/v1/tap":
                    item = standin.tap_event()
                else:
                    item = {"ts": time.time(), "level": ("info", "warning")[n % 2],
                            "logger": "vmesh.proxy", "msg": f"{standin.name} log {n}"}
                lines.append(json.dumps(item).encode() + b"\n")
                n += 1
            writer.write(conn.send(h11.Data(data=b"".join(lines))))
            await writer.drain()
            if not follow and n >= 5:
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                return
            await asyncio.sleep(tick)
    data = b'{"error":"not found"}'
    writer.write(conn.send(h11.Response(status_code=404, headers=[
        *headers, ("content-length", str(len(data)))])))
    writer.write(conn.send(h11.Data(data=data)) + conn.send(h11.EndOfMessage()))
    await writer.drain()


def write_identity(tls_dir: Path, name: str, expired: bool) -> None:
    """Anchor, issuer and a leaf for `name` (expired two hours ago when asked)."""
    anchor = pki.create_anchor("vmesh.local")
    issuer = pki.create_issuer(anchor, "vmesh.local")
    key = pki.generate_key()
    now = datetime.now(UTC) - (timedelta(hours=26) if expired else timedelta(0))
    leaf = pki.issue_leaf(issuer, key.public_key(), spiffe_id=f"spiffe://vmesh.local/svc/{name}",
                          common_name=name, trust_domain="vmesh.local", now=now)
    pki.write_private(tls_dir / "key.pem", pki.key_pem(key))
    pki.write_file(tls_dir / "cert.pem", pki.cert_pem(leaf, issuer.cert))
    pki.write_file(tls_dir / "bundle.pem", pki.cert_pem(anchor.cert))
    # The issuer's key lets the test mint an operator certificate of the same mesh.
    pki.write_private(tls_dir / "issuer-key.pem", pki.key_pem(issuer.key))
    pki.write_file(tls_dir / "issuer.pem", pki.cert_pem(issuer.cert))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--socket", type=Path)
    parser.add_argument("--tls-dir", type=Path, required=True)
    parser.add_argument("--port-file", type=Path)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--expired-leaf", action="store_true")
    args = parser.parse_args()
    if not (args.tls_dir / "cert.pem").exists():
        write_identity(args.tls_dir, args.name, args.expired_leaf)
    standin = StandIn(args.name, args.tls_dir, args.rate)

    def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> Any:
        return serve(standin, r, w)

    if args.port_file:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH,
                                             cafile=str(args.tls_dir / "bundle.pem"))
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(str(args.tls_dir / "cert.pem"), str(args.tls_dir / "key.pem"))
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        pki.write_file(args.port_file, str(port).encode())
    else:
        server = await asyncio.start_unix_server(handler, path=str(args.socket))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
