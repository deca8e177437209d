"""The identity service: HTTPS endpoints in front of `Authority`.

    POST /v1/join    {"token", "host", "csr"}                  -> leaf chain + bundle
    POST /v1/renew   {"certificate", "csr", "proof"}           -> leaf chain + bundle
    GET  /v1/bundle                                             -> trust bundle (PEM)
    GET  /healthz                                               -> {"status": "ok"}
    GET  /metrics                                               -> Prometheus text

At most `max_connections` connections are open at once (`identity.conncap`): beyond it the
service accepts nothing more until one closes, so a flood waits in the listen queue instead
of exhausting its file descriptors.

Renewal proves possession of the current leaf by a signature over the new CSR
made with the current key, so that an expired or foreign leaf is refused with
a JSON reason rather than a bare TLS alert. Every refusal is a 4xx with
`{"error": reason, "detail": ...}` and one log line; a request the service itself fails on
(a bug, its database locked) is a 500 `internal.error`, logged once with its traceback.
"""

import io
import json
import logging
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from identity import castate, pki
from identity.authority import Authority
from identity.conncap import ConnectionCap
from identity.errors import Rejection
from identity.ratelimit import RateLimiter
from vm_mesh import defaults
from vm_mesh.errors import UserError
from vm_mesh.files import write_together

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger("vmesh.identity")

MAX_BODY_BYTES = 64 * 1024
# A refused body up to this size is read and dropped before answering; a larger one is cut off.
DRAIN_LIMIT_BYTES = 1024 * 1024
SERVER_CERT_LIFETIME = timedelta(days=90)
# After failing to renew its own certificate, the service tries again this much later.
SERVER_CERT_RETRY = timedelta(minutes=1)
# A request is read whole within this (from the wait for its first byte to its body's last).
REQUEST_DEADLINE_S = 10.0
# At the cap, how long the accept loop waits for a place before it looks for a shutdown.
CAP_WAIT_S = 0.5


class _AtCap(OSError):
    """No place for another connection yet: it is left in the listen queue."""


class IdentityServer(ThreadingHTTPServer):
    """A threading HTTPS server; the TLS handshake runs in the connection's own thread.

    It follows the CA on disk (`follow_ca`): the bundle it hands out and verifies renewals
    against changes with `vmesh identity rotate` and `retire` at once; the issuer it signs
    with changes when it restarts. The certificate it presents (`certificate_lifetime`) is
    replaced by a fresh one at half its life (`keep_certificate_fresh`), or, when that fails,
    kept and replaced `certificate_retry` later.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        authority: Authority,
        names: list[str],
        limiter: RateLimiter,
        certificate_lifetime: timedelta = SERVER_CERT_LIFETIME,
        request_deadline: float = REQUEST_DEADLINE_S,
        certificate_retry: timedelta = SERVER_CERT_RETRY,
        max_connections: int = defaults.IDENTITY_MAX_CONNECTIONS,
    ) -> None:
        self.authority = authority
        self.connections = ConnectionCap(max_connections)
        self.metrics = _metrics(self.connections)
        self.request_deadline = request_deadline
        self.names = names
        self.certificate_lifetime = certificate_lifetime
        self.certificate_retry = certificate_retry
        self.ssl_context = server_context(authority, names, certificate_lifetime)
        self._fresh_until = self._half_life_from_now()
        self.limiter = limiter
        self._ca_stamp = castate.stamp(authority.ca.directory)
        self._reloading = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the address (`socket.getfqdn`): on
        a host whose resolver does not answer it stalls start-up for the resolver's timeout."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = port

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection once there is a place for it (`_AtCap` when none freed yet:
        `serve_forever` then looks for a shutdown and comes back)."""
        if not self.connections.admit(CAP_WAIT_S):
            raise _AtCap
        try:
            return super().get_request()
        except BaseException:
            self.connections.release()
            raise

    def shutdown_request(self, request: Any) -> None:
        """Close an accepted connection and give back its place."""
        try:
            super().shutdown_request(request)
        finally:
            self.connections.release()

    def follow_ca(self) -> None:
        """Load the CA again if `rotate` or `retire` changed it since it was last loaded. The
        bundle (trusted anchors) follows at once; the issuer that signs stays the one this
        service started with until it restarts (a rollout hands every proxy the new anchor
        first, see ansible/rotate-certs.yml), unless that generation was retired. A CA that
        fails to load is logged, and the one loaded before stays in force."""
        directory = self.authority.ca.directory
        with self._reloading:
            try:
                stamp = castate.stamp(directory)
                if stamp == self._ca_stamp:
                    return
                self._ca_stamp = stamp
                on_disk = castate.load(directory)
                signing = self.authority.ca.issuing
                ca = (castate.load(directory, issuing=signing)
                      if on_disk.trusts(signing) and signing != on_disk.issuing else on_disk)
            except (OSError, ValueError, UserError) as exc:
                log.error("cannot load the changed certificate authority; serving the one "
                          "loaded before", extra={"reason": "ca.reload_failed",
                                                  "detail": str(exc)})
                return
            self.authority.ca = ca
            if ca.issuing != signing:  # its generation retired: one of the new issuer's now
                self._fresh_until = 0.0  # (keep_certificate_fresh)
        log.info("certificate authority reloaded", extra={
            "anchors": [g.number for g in ca.generations if not g.retired],
            "signing": ca.issuing, "active": on_disk.issuing})

    def keep_certificate_fresh(self) -> None:
        """Present a new certificate once the current one is past half its life, so that a
        service running longer than `certificate_lifetime` never presents an expired one. One
        that cannot be made (the issuer expired, its files not written) is logged, and the
        current one presented until the next try, `certificate_retry` later."""
        with self._reloading:
            now = time.time()
            if now < self._fresh_until:
                return
            try:
                self.authority.check_issuer(now)
                self._present()
            except Rejection as expired:
                self._retry_later(now, expired.reason, expired.detail)
                return
            except Exception as error:  # a full disk, a bug: not a reason to drop connections
                self._retry_later(now, "tls.certificate_renewal_failed",
                                  f"{type(error).__name__}: {error}",
                                  None if isinstance(error, OSError) else error)
                return
        log.info("identity service certificate renewed",
                 extra={"lifetime_s": self.certificate_lifetime.total_seconds()})

    def _retry_later(self, now: float, reason: str, detail: str,
                     unexpected: Exception | None = None) -> None:
        """Log why the certificate was not renewed (with the traceback of an `unexpected`
        error), and try again `certificate_retry` from `now` (the caller holds the lock)."""
        retry = self.certificate_retry.total_seconds()
        self._fresh_until = now + retry
        log.error("cannot renew the identity service's certificate; presenting the current one",
                  exc_info=unexpected,
                  extra={"reason": reason, "detail": detail, "retry_in_s": retry})

    def _present(self) -> None:
        """Present a fresh certificate from the issuer that signs (the caller holds the lock)."""
        _present_certificate(self.ssl_context, self.authority, self.names,
                             self.certificate_lifetime)
        self._fresh_until = self._half_life_from_now()

    def _half_life_from_now(self) -> float:
        return time.time() + self.certificate_lifetime.total_seconds() / 2

    def finish_request(self, request: Any, client_address: Any) -> None:
        self.follow_ca()
        self.keep_certificate_fresh()
        request.settimeout(10)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info(
                "tls handshake failed",
                extra={
                    "reason": "tls.handshake_failed",
                    "client": client_address[0],
                    "detail": str(exc),
                },
            )
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()  # its descriptor now, before its place is given back


class _ReadsByDeadline(socket.SocketIO):
    """The reads of a connection, which must all be done by a deadline (`start`): a client
    trickling its request a byte at a time cannot keep a per-read timeout from expiring."""

    def __init__(self, sock: socket.socket, write_timeout: float) -> None:
        super().__init__(sock, "rb")
        self._socket = sock
        self._write_timeout = write_timeout
        self.deadline = 0.0
        self.received = 0  # bytes read since `start`
        self.expired = False

    def start(self, seconds: float) -> None:
        self.deadline, self.received, self.expired = time.monotonic() + seconds, 0, False

    def readinto(self, buffer: "WriteableBuffer") -> int | None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.expired = True
            raise TimeoutError("the request was not read whole by its deadline")
        self._socket.settimeout(left)
        try:
            count = super().readinto(buffer)
        except TimeoutError:
            self.expired = True
            raise
        finally:
            self._socket.settimeout(self._write_timeout)  # for the answer
        self.received += count or 0
        return count


class _Handler(BaseHTTPRequestHandler):
    server: IdentityServer
    protocol_version = "HTTP/1.1"
    server_version = "vmesh-identity"
    sys_version = ""
    timeout = 10

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # makefile's; requests are read through the deadline instead
        self._reads = _ReadsByDeadline(self.connection, self.timeout)
        self.rfile = io.BufferedReader(self._reads)

    def handle_one_request(self) -> None:
        """Read and answer one request, cut off unless read whole within the deadline."""
        self._reads.start(self.server.request_deadline)
        super().handle_one_request()  # closes the connection when a read times out
        if self._reads.expired and self._reads.received:  # not a keep-alive left idle
            log.warning("request cut off: not read whole in time", extra={
                "reason": "request.too_slow", "client": self.client_address[0],
                "detail": f"{self._reads.received} bytes in {self.server.request_deadline:g} s"})

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format % args, extra={"client": self.client_address[0]})

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._json(HTTPStatus.OK, {"status": "ok"})
        elif self.path == "/metrics":
            self._send(HTTPStatus.OK, generate_latest(self.server.metrics), CONTENT_TYPE_LATEST)
        elif self.path == "/v1/bundle":
            bundle = pki.cert_pem(*self.server.authority.ca.bundle)
            self._send(HTTPStatus.OK, bundle, "application/x-pem-file")
        else:
            self._refuse(Rejection("request.not_found", f"no endpoint {self.path}", 404))

    def do_POST(self) -> None:
        try:
            answer = self._decide()
        except Rejection as rejection:
            self._refuse(rejection)
        except OSError:  # the connection failed (reset, timed out): there is no one to answer
            raise
        except Exception as error:  # a failure of the service's own: answer it all the same
            self._fail(error)
        else:
            self._json(HTTPStatus.OK, answer)

    def _decide(self) -> dict[str, Any]:
        """The answer to a join or renewal; Rejection when it is refused."""
        actions = {"/v1/join": self.server.authority.join, "/v1/renew": self.server.authority.renew}
        action = actions.get(self.path)
        if action is None:
            raise Rejection("request.not_found", f"no endpoint {self.path}", 404)
        if not self.server.limiter.allow(self.client_address[0]):
            raise Rejection("request.rate_limited", "too many requests; retry later", 429)
        return action(self._body())

    def _fail(self, error: Exception) -> None:
        """Log a failure of the service's own once, with its traceback, and answer 500 (the
        connection closes after it: what was left of the request is unknown)."""
        log.error("request failed", exc_info=error, extra={
            "reason": "internal.error", "client": self.client_address[0], "path": self.path})
        self.close_connection = True
        self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {
            "error": "internal.error",
            "detail": f"the identity service failed on {self.path} ({type(error).__name__}); "
                      "its log has the cause, and the request may be tried again"})

    def _body(self) -> dict[str, Any]:
        length_header = self.headers.get("Content-Length")
        if length_header is None or not (length_header.isascii() and length_header.isdigit()):
            raise Rejection("request.length_required",
                            "a Content-Length of decimal digits is required", 411)
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._discard(min(length, DRAIN_LIMIT_BYTES))
            raise Rejection("request.too_large", f"body over {MAX_BODY_BYTES} bytes", 413)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise Rejection("request.malformed_json", "body is not JSON") from None
        if not isinstance(body, dict):
            raise Rejection("request.malformed_json", "body must be a JSON object")
        return body

    def _discard(self, length: int) -> None:
        """Read and drop a refused body, so the client sees the answer instead of a reset."""
        while length > 0:
            chunk = self.rfile.read(min(length, 64 * 1024))
            if not chunk:
                return
            length -= len(chunk)

    def _refuse(self, rejection: Rejection) -> None:
        log.warning(
            "request refused",
            extra={
                "reason": rejection.reason,
                "detail": rejection.detail,
                "client": self.client_address[0],
                "path": self.path,
            },
        )
        self._json(rejection.status, {"error": rejection.reason, "detail": rejection.detail})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode() + b"\n", "application/json")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)


class _ConnectionMetrics(Collector):
    """The service's connections as metrics: open, the cap, and the times it was reached."""

    def __init__(self, connections: ConnectionCap) -> None:
        self.connections = connections

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("identity_connections_open", "Connections open now.",
                                value=self.connections.open)
        yield GaugeMetricFamily("identity_connections_max",
                                "The cap on open connections (--max-connections).",
                                value=self.connections.limit)
        yield CounterMetricFamily(
            "identity_connection_cap_reached",
            "Times the service reached its connection cap and stopped accepting.",
            value=self.connections.episodes)


def _metrics(connections: ConnectionCap) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(_ConnectionMetrics(connections))
    return registry


def server_context(
    authority: Authority, names: list[str], lifetime: timedelta = SERVER_CERT_LIFETIME
) -> ssl.SSLContext:
    """TLS 1.2+ server context with a fresh certificate for `names` (DNS names and IPs)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _present_certificate(context, authority, names, lifetime)
    return context


def _present_certificate(
    context: ssl.SSLContext, authority: Authority, names: list[str], lifetime: timedelta
) -> None:
    """Have `context` present a fresh certificate for `names` from the issuer that signs
    (handshakes from then on; those under way keep the one they began with)."""
    ca = authority.ca
    key = pki.generate_key()
    ips = [n for n in names if _is_ip(n)]
    dns = [n for n in names if not _is_ip(n)]
    cert = pki.issue_leaf(
        ca.active,
        key.public_key(),
        spiffe_id=None,
        common_name="vmesh identity service",
        trust_domain=ca.trust_domain,
        lifetime=lifetime,
        dns_names=dns,
        ip_addresses=ips,
    )
    tls_dir = castate.server_directory(ca)
    write_together(tls_dir, [("key.pem", pki.key_pem(key), 0o600),
                             ("cert.pem", pki.cert_pem(cert, ca.active.cert), 0o644)])
    context.load_cert_chain(tls_dir / "cert.pem", tls_dir / "key.pem")


def _is_ip(name: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, name)
            return True
        except OSError:
            continue
    return False
