"""The admin API client: JSON gets and NDJSON streams from one source at a time.

Local sources are reached over their unix socket (protected by file
permissions); remote ones over mutual TLS with an operator certificate
(`vmesh identity operator NAME`). The peer must present a leaf of the trust
bundle with a `spiffe://<td>/svc/...` identity: its certificates carry no DNS
names, so the SPIFFE ID is checked instead of a hostname.

Every failure becomes an `AdminError` with a stable reason string
(`admin.connect_refused`, `admin.timeout`, ...) and one line of detail, so the
console and the checks can show why a source is unreachable.
"""

from __future__ import annotations

import contextlib
import json
import re
import ssl
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from cryptography import x509

from console.sources import Source
from identity import pki
from vm_mesh import paths
from vm_mesh.defaults import LEAF_FILES
from vm_mesh.errors import cause_of, caused_by
from vm_mesh.files import settle

# Per-request timeouts: short connect (a dead host must not stall a view),
# a read timeout for JSON, none between lines of a stream (taps may be quiet).
JSON_TIMEOUT = httpx.Timeout(3.0, connect=1.5)
STREAM_TIMEOUT = httpx.Timeout(None, connect=1.5)
MAX_LINE = 1 << 20  # one NDJSON object; a longer line means a broken or hostile peer
MAX_REFUSAL = 400  # characters of an error answer's detail shown to the user
_REASON = re.compile(r"admin\.[a-z0-9_.]{1,64}")  # the admin API's stable reasons

FilesStamp = tuple[tuple[int, int, int], ...]  # (inode, mtime ns, size) of each file


class AdminError(Exception):
    """A source could not answer; `reason` is stable, `detail` is for people, `status` the
    HTTP status of an answer that refused the request (None when no answer came)."""

    def __init__(self, source: str, reason: str, detail: str, *,
                 status: int | None = None) -> None:
        super().__init__(f"{source}: {detail} [{reason}]")
        self.source = source
        self.reason = reason
        self.detail = detail
        self.status = status


@dataclass(frozen=True, slots=True)
class OperatorCredentials:
    """The operator's client certificate, key and trust bundle for remote admin APIs."""

    cert: Path
    key: Path
    ca: Path

    @classmethod
    def default(cls) -> OperatorCredentials:
        """`paths.state_dir("operator")/{cert,key,bundle}.pem`, as `vmesh identity operator`."""
        base = paths.state_dir("operator")
        return cls(base / "cert.pem", base / "key.pem", base / "bundle.pem")

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: TLS 1.2+, our bundle only, our certificate, no hostname check.

        Built once per state of the three files and shared by every client: read again
        when one of them changes (a renewed operator certificate) or after `forget_context`.
        """
        stamp = self.stamp()
        cached = _CONTEXTS.get(self)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        context = self._load()
        _CONTEXTS[self] = (stamp, context)
        return context

    def forget_context(self) -> None:
        """Build the context from the files again next time (after a TLS failure)."""
        _CONTEXTS.pop(self, None)

    def stamp(self) -> FilesStamp:
        """The state of the three files (AdminError when one is missing): a new certificate,
        key or bundle, even written in place, changes it."""
        self._settle()
        stamps = []
        for what, path in (("certificate", self.cert), ("key", self.key), ("CA bundle", self.ca)):
            try:
                info = path.stat()
            except OSError:
                info = None
            if info is None or not stat.S_ISREG(info.st_mode):
                raise AdminError(
                    "tls", "admin.operator_cert_missing",
                    f"operator {what} {path} not found "
                    "(run `vmesh identity operator NAME` or pass --cert/--key/--ca)",
                )
            stamps.append((info.st_ino, info.st_mtime_ns, info.st_size))
        return tuple(stamps)

    def _settle(self) -> None:
        """Finish moving in place the files of a `vmesh identity operator` cut off halfway
        (they are replaced together, see `vm_mesh.files.write_together`), so that the key
        and the certificate read belong together; when this user may not, they stay."""
        directory = self.cert.parent
        if (self.ca, self.key, self.cert) == tuple(directory / name for name in LEAF_FILES):
            with contextlib.suppress(OSError):
                settle(directory, LEAF_FILES)

    def _load(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
            context.load_cert_chain(str(self.cert), str(self.key))
        except (ssl.SSLError, OSError) as exc:  # e.g. a key that is not the certificate's yet
            raise AdminError("tls", "admin.tls_error",
                             f"operator credentials {self.cert}, {self.key}, {self.ca} "
                             f"unusable: {exc}") from exc
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = False  # mesh leaves carry a SPIFFE URI SAN, checked below
        context.verify_mode = ssl.CERT_REQUIRED
        return context


# credentials -> (the state of their files, the context made from them)
_CONTEXTS: dict[OperatorCredentials, tuple[FilesStamp, ssl.SSLContext]] = {}


def _peer_is_mesh_proxy(response: httpx.Response) -> str | None:
    """The problem with the peer's certificate, or None when it is a vmesh proxy."""
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream else None
    if ssl_object is None:
        return None  # not TLS (unix socket)
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return "peer sent no certificate"
    uris = pki.uri_sans(x509.load_der_x509_certificate(der))
    if len(uris) != 1 or "/svc/" not in uris[0] or not uris[0].startswith("spiffe://"):
        return f"peer identity {uris or 'none'} is not a vmesh service"
    return None


class AdminClient:
    """An async client for one source's admin API; use as `async with`."""

    def __init__(self, source: Source, credentials: OperatorCredentials | None = None) -> None:
        self.source = source
        self._credentials: OperatorCredentials | None = None
        self._stamp: FilesStamp = ()  # of the credentials' files it was made with
        self._tls_failed = False  # its context may be outdated
        if source.kind == "unix":
            # No TLS on a unix socket: verify=False spares loading the system CA store.
            transport = httpx.AsyncHTTPTransport(uds=source.address, retries=0, verify=False)
            base_url = "http://admin"
        else:
            self._credentials = credentials or OperatorCredentials.default()
            self._stamp = self._credentials.stamp()
            context = self._credentials.ssl_context()
            transport = httpx.AsyncHTTPTransport(verify=context, retries=0)
            base_url = f"https://{source.address}"
        self._http = httpx.AsyncClient(transport=transport, base_url=base_url, timeout=JSON_TIMEOUT)
        self.last_server_date: datetime | None = None
        self.last_server_date_seen: datetime | None = None  # this host's time when it came

    def current(self) -> bool:
        """Whether this client's TLS context is still good: no TLS failure, and the
        credentials' files unchanged since it was made. A long-lived holder makes a new
        client when it is not. AdminError when the files are gone."""
        return self._credentials is None or (
            not self._tls_failed and self._credentials.stamp() == self._stamp)

    @property
    def trust_bundle(self) -> Path | None:
        """The bundle the peer's certificate is verified against (None on a unix socket)."""
        return self._credentials.ca if self._credentials else None

    def tls_failed(self) -> None:
        """After a TLS failure: this client is no longer current, and the next one reads the
        credentials' files again (they may have been renewed in place)."""
        if self._credentials is not None:
            self._tls_failed = True
            self._credentials.forget_context()

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        """The JSON body of `GET path`; AdminError on any failure."""
        async with self._errors_mapped():
            response = await self._http.get(path, params=params)
            self._check(response)
            try:
                return response.json()
            except ValueError as exc:
                raise AdminError(self.source.name, "admin.bad_json", f"{path}: {exc}") from exc

    async def get_status(self, path: str) -> int:
        """The HTTP status of `GET path` (for /ready and /live); AdminError when unreachable."""
        async with self._errors_mapped():
            response = await self._http.get(path)
            self._remember_date(response)
            return response.status_code

    async def stream(self, path: str, params: dict[str, str] | None = None, *,
                     opened: Callable[[], None] | None = None) -> AsyncIterator[dict[str, Any]]:
        """The objects of an NDJSON stream, one per line, until the server ends it; `opened`
        is called once the server has accepted the stream."""
        async with self._errors_mapped(), self._http.stream("GET", path, params=params,
                                     timeout=STREAM_TIMEOUT) as response:
            if response.status_code != 200:
                await response.aread()
            self._check(response)
            if opened is not None:
                opened()
            pending = b""
            async for chunk in response.aiter_bytes():
                *lines, pending = (pending + chunk).split(b"\n")
                if len(pending) > MAX_LINE:
                    raise AdminError(self.source.name, "admin.line_too_long",
                                     f"{path}: a line longer than {MAX_LINE} bytes")
                for line in lines:
                    item = self._parse_line(path, line)
                    if item is not None:
                        yield item

    def _parse_line(self, path: str, line: bytes) -> dict[str, Any] | None:
        if not line.strip():
            return None
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise AdminError(self.source.name, "admin.bad_json", f"{path}: {exc}") from exc
        return item if isinstance(item, dict) else None

    def _remember_date(self, response: httpx.Response) -> None:
        date = response.headers.get("date")
        if date:
            try:
                self.last_server_date = parsedate_to_datetime(date)
            except (TypeError, ValueError):
                self.last_server_date = None
            self.last_server_date_seen = datetime.now(UTC)

    def _check(self, response: httpx.Response) -> None:
        self._remember_date(response)
        problem = _peer_is_mesh_proxy(response)
        if problem:
            raise AdminError(self.source.name, "admin.peer_identity", problem)
        if response.status_code != 200:
            reason, said = _refusal(response)
            answered = f"{response.request.url.path} answered {response.status_code}"
            raise AdminError(self.source.name, reason,
                             f"{answered}: {said}" if said else answered,
                             status=response.status_code)

    def _errors_mapped(self) -> _ErrorMapper:
        return _ErrorMapper(self)


def _refusal(response: httpx.Response) -> tuple[str, str]:
    """The reason and the words of an error answer: the admin API's own reason and its detail
    (whole, up to `MAX_REFUSAL` characters: it says what to do), else `admin.http_<status>`
    and the first line of the body, cut short."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        reason, detail = body.get("error"), body.get("detail")
        if isinstance(reason, str) and _REASON.fullmatch(reason) and isinstance(detail, str):
            return reason, detail[:MAX_REFUSAL]
    text = response.text.strip()
    return f"admin.http_{response.status_code}", text.splitlines()[0][:120] if text else ""


class _ErrorMapper:
    """Turns transport exceptions into AdminError (the one mapping table of the client)."""

    def __init__(self, client: AdminClient) -> None:
        self._client = client
        self._source = client.source

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: object) -> Literal[False]:
        if exc is None or isinstance(exc, AdminError):
            return False
        where = self._source.address
        mapped: tuple[str, str] | None = None
        if isinstance(exc, httpx.TimeoutException):
            mapped = ("admin.timeout", f"no answer from {where} in time")
        elif isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            mapped = _connect_reason(exc, where, self._client.trust_bundle)
        elif isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
            mapped = ("admin.connection_lost", f"connection to {where} lost: {exc or 'closed'}")
        elif isinstance(exc, ssl.SSLError):
            mapped = _tls_reason(exc, where, self._client.trust_bundle)
        elif isinstance(exc, httpx.HTTPError | OSError):
            mapped = ("admin.error", f"{where}: {type(exc).__name__}: {exc}")
        if mapped is None:
            return False
        if mapped[0] in TLS_REASONS:
            self._client.tls_failed()
        raise AdminError(self._source.name, *mapped) from exc


TLS_REASONS = ("admin.tls_error", "admin.tls_untrusted")


def _tls_reason(exc: BaseException, where: str, bundle: Path | None) -> tuple[str, str]:
    """`admin.tls_untrusted` when the peer's certificate did not verify against `bundle`,
    else `admin.tls_error`."""
    cause = cause_of(exc, ssl.SSLCertVerificationError)
    if cause is None:
        return "admin.tls_error", f"TLS with {where} failed: {exc}"
    return "admin.tls_untrusted", (f"the certificate of {where} does not verify against "
                                   f"{bundle}: {cause.verify_message} (is it this mesh's "
                                   "trust bundle? pass another with --ca)")


def _connect_reason(exc: Exception, where: str, bundle: Path | None) -> tuple[str, str]:
    text = str(exc)
    if caused_by(exc, ssl.SSLError) or "SSL" in text or "certificate" in text:
        return _tls_reason(exc, where, bundle)
    if caused_by(exc, FileNotFoundError) or "No such file" in text:
        return "admin.socket_missing", f"socket {where} does not exist (proxy not running?)"
    if caused_by(exc, ConnectionRefusedError) or "refused" in text.lower():
        return "admin.connect_refused", f"connection to {where} refused (proxy not running?)"
    return "admin.connect_failed", f"cannot connect to {where}: {text or type(exc).__name__}"
