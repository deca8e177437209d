"""`vmesh check`: collect facts from admin APIs, files and sockets, then judge them.

The judgements are the pure functions of `console.models.checks`; this module
only gathers their inputs: polls of every admin source, the leaves this
host's cert-helpers keep, the service configs of this host and who listens on
their ports, its policy files, the identity service, and the issuers of the CA when this
host keeps it.
"""

from __future__ import annotations

import asyncio
import ssl
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from console.api import CertInfo
from console.client import OperatorCredentials
from console.collect import Poll, poll_all
from console.hosts import proxy_service
from console.models.checks import (
    Finding,
    PortUse,
    Status,
    check_cert,
    check_clock,
    check_discovery,
    check_discovery_source,
    check_helper_leaf,
    check_listeners,
    check_policy_loads,
    check_port,
    check_reachable,
    check_unprotected,
)
from console.sources import Source
from identity import castate, pki
from identity.issuer_checks import check_issuer_constraints
from vm_mesh import paths
from vm_mesh.config import load_service_config
from vm_mesh.errors import UserError
from vm_mesh.policy.files import PolicyInvalid, policy_files
from vm_mesh.policy.unprotected import unknown_services

IDENTITY_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """Where to look beyond the admin sources."""

    identity_url: str | None = None  # default: from mesh.toml
    ca_bundle: Path | None = None  # to verify the identity service


def judge_polls(polls: Sequence[Poll], now: datetime) -> list[Finding]:
    """Findings about admin reachability, listeners, certificates, discovery and clocks."""
    findings: list[Finding] = []
    seen_ca: set[str] = set()
    for poll in polls:
        name = poll.source.name
        findings.append(check_reachable(
            "admin", f"{name} ({poll.source.address})",
            None if poll.ok else poll.detail, poll.reason,
            f"is vmesh-proxy@{name} running? `systemctl status vmesh-proxy@{name}`"))
        if not poll.ok:
            continue
        if poll.ready is False:
            findings.append(Finding("admin", Status.WARN, name, "answers but is not ready",
                                    "admin.not_ready",
                                    f"see `vmesh logs --service {name} --level warning`"))
        if poll.stats is not None:
            findings += check_listeners(name, poll.stats.service or name, poll.stats.listeners)
        for cert in poll.certs.certs if poll.certs else ():
            if cert.kind != "leaf":
                if cert.serial in seen_ca:
                    continue
                seen_ca.add(cert.serial)
            findings.append(check_cert(cert, name, now))
        findings += check_discovery(name, poll.endpoints, now)
        if poll.server_date is not None:
            findings.append(check_clock(name, poll.server_date, poll.server_date_seen or now))
    return findings


def helper_leaves() -> list[tuple[str, CertInfo]]:
    """(name, leaf) of each cert-helper of this host: a state directory NAME holding a leaf
    of `svc/NAME` that no service file names (a service's leaf is its proxy's to report).
    What this user may not read is left out."""
    found = []
    for cert_file in sorted(paths.state_dir("").glob("*/cert.pem")):
        name = cert_file.parent.name
        if paths.service_config(name).exists():
            continue
        try:
            leaf = pki.load_certs(cert_file.read_bytes())[0]
            identity = pki.identity_of(leaf)
        except (OSError, ValueError, IndexError):
            continue
        if (identity.kind, identity.name) != ("svc", name):
            continue
        found.append((name, CertInfo(
            kind="leaf", subject=leaf.subject.rfc4514_string(), san=(str(identity),),
            serial=pki.new_serial_hex(leaf), not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc, issuer=leaf.issuer.rfc4514_string(),
            owner=f"cert-helper {name}", dns=tuple(pki.dns_sans(leaf)))))
    return found


def _mesh_config() -> dict[str, Any]:
    try:
        return tomllib.loads(paths.mesh_config().read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _identity_url(options: CheckOptions) -> str | None:
    if options.identity_url:
        return options.identity_url
    config = _mesh_config()
    identity = config.get("identity")
    url = config.get("identity_url")
    if not url and isinstance(identity, dict):
        url = identity.get("url")
    return str(url) if url else None


def _ca_bundle(options: CheckOptions) -> Path | None:
    if options.ca_bundle:
        return options.ca_bundle
    candidates = [paths.state_dir("operator") / "bundle.pem",
                  *sorted(paths.state_dir("").glob("*/bundle.pem"))]
    return next((p for p in candidates if p.is_file()), None)


async def check_identity(options: CheckOptions) -> Finding:
    """The identity service answers over TLS verified by our trust bundle."""
    url = _identity_url(options)
    if not url:
        return Finding("identity", Status.WARN, "identity service",
                       "address not configured", "identity.not_configured",
                       f"set identity_url in {paths.mesh_config()} or pass --identity URL")
    bundle = _ca_bundle(options)
    if bundle is None:
        return Finding("identity", Status.WARN, url, "no trust bundle to verify it with",
                       "identity.no_bundle", "pass --ca BUNDLE or join this host first")
    try:
        context = ssl.create_default_context(cafile=str(bundle))
    except (ssl.SSLError, OSError) as exc:
        return Finding("identity", Status.FAIL, url, f"trust bundle {bundle} unusable: {exc}",
                       "identity.bad_bundle", "pass --ca BUNDLE with the mesh's anchors")
    try:
        async with httpx.AsyncClient(verify=context, timeout=IDENTITY_TIMEOUT_S) as http:
            await http.get(url)
    except httpx.HTTPError as exc:
        return check_reachable("identity", url, f"{type(exc).__name__}: {exc}".rstrip(": "),
                               "identity.unreachable",
                               "is vmesh-identity running? `systemctl status vmesh-identity`; "
                               "proxies keep serving on their current certs meanwhile")
    return check_reachable("identity", url, None, None, "")


def ca_issuers() -> list[Finding]:
    """Whether each trusted issuer of the CA on this host, if it is the CA host, is
    name-constrained to its trust domain (nothing when there is no CA here, or this user may
    not read it)."""
    directory = paths.state_dir("identity")
    try:
        trust_domain, active, generations = castate.generations(directory)
    except (OSError, ValueError, KeyError, UserError):
        return []
    return check_issuer_constraints(trust_domain, active, generations)


def configured_ports() -> list[tuple[str, str, int]]:
    """(service, role, port) from every valid service file of this host (port 0: the OS
    picks one, nothing to check)."""
    result = []
    services = paths.etc_dir() / "services"
    for path in sorted(services.glob("*.toml")) if services.is_dir() else ():
        try:
            listen = load_service_config(path).config.listen
        except UserError:
            continue  # a bad service file is the proxy's to report, with file and line
        for role in ("inbound", "outbound", "admin"):
            port = int(getattr(listen, role).rsplit(":", 1)[1])
            if port > 0:
                result.append((path.stem, role, port))
    return result


def check_policy() -> list[Finding]:
    """Whether this host's policy files load, and a warning for each Authorization in them
    that names no service of this host (none at all without policy files)."""
    files = policy_files(paths.policy_dir())
    if not files:
        return []
    from vm_mesh.policy.loader import load_files  # the YAML parser, only with documents

    directory = str(paths.policy_dir())
    try:
        policy = load_files(files)
    except PolicyInvalid as exc:
        return [check_policy_loads(directory, [str(e) for e in exc.errors])]
    return [check_policy_loads(directory, []), *(
        check_unprotected(w.file, w.line, w.reason, w.code)
        for w in unknown_services(policy, paths.service_names()))]


def listeners() -> dict[int, tuple[str, bool | None]]:
    """TCP port -> (process name, whether it is a vmesh proxy; None when this user cannot
    tell) for this host's listeners."""
    found: dict[int, tuple[str, bool | None]] = {}
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return found
    for conn in connections:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr:
            continue
        name: str
        is_proxy: bool | None
        name, is_proxy = "a process of another user", None  # psutil shows no pid then
        if conn.pid:
            name = f"pid {conn.pid}"
            try:
                proc = psutil.Process(conn.pid)
                name = f"{proc.name()} (pid {conn.pid})"
                is_proxy = proxy_service(proc.cmdline()) is not None
            except psutil.Error:
                pass  # gone, or hidden from this user: not known
        found.setdefault(conn.laddr.port, (name, is_proxy))
    return found


def check_ports() -> list[Finding]:
    ports = configured_ports()
    if not ports:
        return []
    listening = listeners()
    findings = []
    for service, role, port in ports:
        holder = listening.get(port)
        name, is_proxy = holder if holder else (None, False)
        findings.append(check_port(PortUse(service, role, port, name, is_proxy)))
    return findings


async def collect_findings(polls: Sequence[Poll], options: CheckOptions, now: datetime, *,
                           sources_found: bool,
                           discovery_errors: Mapping[str, str] | None = None) -> list[Finding]:
    """Every finding about `polls` and this host, in a stable order: admin, listeners, certs,
    discovery, clock, ports, policy, identity. The one collector of `vmesh check` and the
    console's checks view.

    `sources_found`: whether any admin source was listed at all; `discovery_errors`: why each
    discovery backend that failed listed no proxies.
    """
    findings = judge_polls(polls, now)
    findings += [check_helper_leaf(name, leaf, now)
                 for name, leaf in await asyncio.to_thread(helper_leaves)]
    findings += [check_discovery_source(label, error)
                 for label, error in (discovery_errors or {}).items()]
    findings += await asyncio.to_thread(check_ports)
    findings += await asyncio.to_thread(check_policy)
    findings.append(await check_identity(options))
    findings += await asyncio.to_thread(ca_issuers)
    if not sources_found:
        findings.insert(0, Finding("admin", Status.FAIL, "this host", "no proxy admin API found",
                                   "admin.no_sources",
                                   f"no sockets in {paths.run_dir()}; pass --admin HOST:PORT"))
    order = ["admin", "listeners", "certs", "discovery", "clock", "ports", "policy",
             "identity"]
    return sorted(findings, key=lambda f: order.index(f.check) if f.check in order else 99)


async def run_checks(sources: Sequence[Source], credentials: OperatorCredentials | None = None,
                     options: CheckOptions | None = None,
                     discovery_errors: Mapping[str, str] | None = None) -> list[Finding]:
    """`vmesh check`: poll every source, then collect the findings."""
    polls = await poll_all(sources, credentials)
    return await collect_findings(polls, options or CheckOptions(), datetime.now(UTC),
                                  sources_found=bool(sources), discovery_errors=discovery_errors)
