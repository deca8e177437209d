"""`vmesh check`: pure judgements over collected facts, one `Finding` each.

Every finding has a stable `reason` (`certs.leaf_expired`, ...), the thing it
is about, one line saying what is wrong, and a hint how to fix it. Collecting
the facts (admin APIs, files, sockets) happens in `console.checks`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from console.api import CertInfo, ListenerLoad, UpstreamEndpoints, common_name
from console.format import ago
from console.models.certs import Health, health, time_left
from console.models.endpoints import failed_query
from console.models.listeners import NEAR_CAP, config_key, crowded
from vm_mesh.discovery.sites import GATEWAY_SERVICE
from vm_mesh.findings import Finding, Status

CLOCK_SKEW_TOLERANCE = timedelta(seconds=30)
# Leaves start 5 minutes in the past (defaults.CLOCK_SKEW_BACKDATE): beyond that, mTLS breaks.
CLOCK_SKEW_FAIL = timedelta(minutes=5)
DATE_RESOLUTION = timedelta(seconds=1)  # of an HTTP Date header


def exit_code(findings: Iterable[Finding]) -> int:
    """1 when any finding failed, else 0 (warnings alone do not fail `vmesh check`)."""
    return 1 if any(f.status is Status.FAIL for f in findings) else 0


_CERT_HINTS = {
    "leaf": "the proxy renews it from the identity service; check `vmesh check` identity "
            "and the proxy's logs (`vmesh logs --service SVC --level warning`)",
    "issuer": "run `vmesh identity rotate` on the CA host before leaves stop renewing; "
              "`ansible/rotate-certs.yml` takes every host through it without downtime",
    "anchor": "run `vmesh identity rotate` on the CA host (a new anchor and issuer; the old "
              "anchor stays trusted until `vmesh identity retire`); "
              "`ansible/rotate-certs.yml` takes every host through it",
}


def check_cert(cert: CertInfo, owner: str, now: datetime) -> Finding:
    """A certificate against the thresholds of its kind."""
    state = health(cert, now)
    target = (f"leaf of {owner}" if cert.kind == "leaf"
              else f"{cert.kind} {common_name(cert.subject)} #{cert.serial[:8]}")
    reason = f"certs.{cert.kind}_{state.label.replace('-', '_')}"
    if state is Health.OK:
        return Finding("certs", Status.OK, target, f"valid, {time_left(cert, now)} left", reason)
    status = Status.FAIL if state.failing else Status.WARN
    if state is Health.EXPIRED:
        message = f"expired at {cert.not_after:%Y-%m-%d %H:%M:%SZ} ({time_left(cert, now)})"
    elif state is Health.NOT_YET_VALID:
        message = f"not valid before {cert.not_before:%Y-%m-%d %H:%M:%SZ} (clock skew?)"
    else:
        message = f"{state.label}: only {time_left(cert, now)} left"
    return Finding("certs", status, target, message, reason, _CERT_HINTS.get(cert.kind, ""))


def check_helper_leaf(name: str, leaf: CertInfo, now: datetime) -> Finding:
    """The leaf a cert-helper keeps for a program no proxy fronts (Prometheus'): judged as a
    proxy's leaf, but it is the helper that renews it."""
    finding = check_cert(leaf, f"cert-helper {name}", now)
    if finding.status is Status.OK:
        return finding
    return replace(finding, hint=f"`vmesh cert-helper {name}` renews it: is it running? "
                   f"See `systemctl status vmesh-cert-helper@{name}` or its log")


def check_discovery(owner: str, upstreams: list[UpstreamEndpoints], now: datetime
                    ) -> list[Finding]:
    """Each upstream a proxy resolves: stale or last-known-good data is a warning, and so is
    one with no instance whose requests fail over to another site's (`failover`). (Not an
    old set as such: the backends hand on a set when it changes, so a steady service's set
    is as old as its last change.)"""
    findings = []
    for up in upstreams:
        target = f"{owner} -> {up.service}"
        age = (now - up.updated_at) if up.updated_at else None
        if up.updated_at is None and up.instances == 0:  # watched, no view yet
            findings.append(Finding(
                "discovery", Status.WARN, target,
                "waiting for discovery's first answer",
                "discovery.first_answer_pending",
                "the answer comes within seconds; should this stay, check mDNS/Consul on "
                "this host"))
        elif up.instances == 0 and up.failover is not None and up.failover.to:
            when = ago((now - up.failover.since).total_seconds()
                       if up.failover.since else None)
            findings.append(Finding(
                "discovery", Status.WARN, target,
                f"no instances known (source {up.source}); requests go to "
                f"{up.failover.to} instead (failed over {when}: {up.failover.reason})",
                "discovery.failed_over",
                f"{up.service}'s own instances are down: start {up.service} or check its "
                "registration; its ServicePolicy failover serves meanwhile"))
        elif up.instances == 0:
            findings.append(Finding(
                "discovery", Status.FAIL, target,
                f"no instances known (source {up.source}{failed_query(up)})",
                "discovery.no_instances",
                f"the discovery backend fails to answer for {up.service}: fix what it says"
                if up.error else
                f"start {up.service} or check its registration (`vmesh check` on its host)"))
        elif up.stale or up.source == "last-known-good":
            shown = f"{int(age.total_seconds())}s old" if age else "age unknown"
            findings.append(Finding(
                "discovery", Status.WARN, target,
                f"stale: {up.instances} instance(s) from {up.source}, {shown}"
                f"{failed_query(up)}",
                "discovery.stale",
                "the discovery backend is not answering; check mDNS/Consul on this host"))
        else:
            findings.append(Finding(
                "discovery", Status.OK, target,
                f"{up.instances} instance(s) from {up.source}", "discovery.fresh"))
    return findings


def check_listeners(owner: str, service: str, listeners: Sequence[ListenerLoad]
                    ) -> list[Finding]:
    """A proxy's (or a mesh gateway's) listeners against their connection caps: one at its
    cap fails (it accepts nothing now), one above `NEAR_CAP` of it warns; nothing from a
    proxy without caps."""
    if not listeners:
        return []
    full = crowded(owner, listeners)
    if not full:
        return [Finding("listeners", Status.OK, owner,
                        f"{len(listeners)} listeners below {NEAR_CAP:.0%} of their caps",
                        "listeners.below_cap")]
    config_file, unit = _config_and_unit(service)
    findings = []
    for c in full:
        findings.append(Finding(
            "listeners", Status.FAIL if c.saturated else Status.WARN, f"{owner} {c.listener}",
            c.message, c.reason,
            f"find who holds the connections with `ss -tnp` on its host; if the load is real, "
            f"raise `[max_connections] {config_key(c.listener)}` in {config_file} (and the "
            f"unit's LimitNOFILE) and restart {unit}"))
    return findings


def _config_and_unit(service: str) -> tuple[str, str]:
    """The file that sets the caps of `service`'s listeners and the unit that runs it."""
    if service == GATEWAY_SERVICE:
        return "/etc/vmesh/gateway.toml", GATEWAY_SERVICE
    return f"/etc/vmesh/services/{service}.toml", f"vmesh-proxy@{service}"


# what a Consul source's error says when the agent refused the ACL token (console.discovered)
ACL_TOKEN_REFUSED = "refused the ACL token"


def check_discovery_source(label: str, error: str) -> Finding:
    """A discovery backend the console could not list proxies from."""
    if ACL_TOKEN_REFUSED in error:
        return Finding("discovery", Status.FAIL, label, f"cannot list proxies: {error}",
                       "discovery.consul_acl_refused",
                       "set consul_token in mesh.toml's [discovery] (or CONSUL_HTTP_TOKEN when "
                       "it has none) to a token that may read the catalog")
    return Finding("discovery", Status.FAIL, label, f"cannot list proxies: {error}",
                   "discovery.source_unreachable",
                   "proxies keep routing on their last known good view; check the backend "
                   "(mDNS on this host's interfaces, the Consul agent, the endpoints file)")


def check_clock(owner: str, server_time: datetime, local_time: datetime,
                tolerance: timedelta = CLOCK_SKEW_TOLERANCE) -> Finding:
    """Clock skew between this host and a proxy's host, from an HTTP Date header
    (`server_time`) and this host's time when it arrived (`local_time`). The header has
    whole seconds, rounded down, so the proxy's clock read half a second more on average."""
    skew = server_time + DATE_RESOLUTION / 2 - local_time
    seconds = round(skew.total_seconds())
    text = f"clock differs by {seconds:+d}s"
    if abs(skew) > CLOCK_SKEW_FAIL:
        return Finding("clock", Status.FAIL, owner, text, "clock.skew_breaks_tls",
                       "certificates are backdated 5 min only; run chrony/timesyncd on both hosts")
    if abs(skew) > tolerance:
        return Finding("clock", Status.WARN, owner, text, "clock.skew",
                       "enable time synchronisation (chrony or systemd-timesyncd)")
    return Finding("clock", Status.OK, owner, f"in sync ({seconds:+d}s)", "clock.in_sync")


@dataclass(frozen=True, slots=True)
class PortUse:
    """A port a service is configured to listen on, and who listens there now."""

    service: str
    role: str  # inbound | outbound | admin
    port: int
    holder: str | None  # process name holding it, None when nobody listens
    holder_is_proxy: bool | None  # None: the holder is another user's, hidden from this one


def check_port(use: PortUse) -> Finding:
    target = f"{use.service} {use.role} port {use.port}"
    if use.holder is None:
        return Finding("ports", Status.WARN, target, "nobody listens (proxy not running?)",
                       "ports.not_listening",
                       f"start the proxy: systemctl start vmesh-proxy@{use.service}")
    if use.holder_is_proxy is None:
        return Finding("ports", Status.WARN, target,
                       "listened on by a process of another user, which this one cannot see",
                       "ports.holder_not_visible",
                       "run `vmesh check` as root to tell whether it is the proxy")
    if not use.holder_is_proxy:
        return Finding("ports", Status.FAIL, target, f"held by another process: {use.holder}",
                       "ports.in_use_by_other",
                       "stop that process or give the service another port in its config")
    return Finding("ports", Status.OK, target, "listened on by its proxy", "ports.ok")


def check_policy_loads(directory: str, errors: Sequence[str]) -> Finding:
    """The host's policy files load, or fail with the first of their `errors`."""
    if not errors:
        return Finding("policy", Status.OK, directory, "loads", "policy.ok")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return Finding("policy", Status.FAIL, directory, f"does not load: {errors[0]}{more}",
                   "policy.invalid",
                   "`vmesh policy check` lists every error; proxies keep the policy they "
                   "loaded before")


def check_unprotected(file: str, line: int, message: str, reason: str) -> Finding:
    """An Authorization that loads but protects nothing on this host
    (`vm_mesh.policy.unprotected`)."""
    return Finding("policy", Status.WARN, f"{file}:{line}", message, reason,
                   "correct the service's name, or put the document only on the hosts that "
                   "run the service")


def check_reachable(check: str, target: str, error: str | None, reason: str | None,
                    hint: str) -> Finding:
    """A service the mesh depends on (admin API, identity service) answered or not."""
    if error is None:
        return Finding(check, Status.OK, target, "reachable", f"{check}.reachable")
    return Finding(check, Status.FAIL, target, error, reason or f"{check}.unreachable", hint)
