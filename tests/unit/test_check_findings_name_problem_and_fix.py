"""`vmesh check` judgements: one finding per fact, failing ones with a reason and a hint."""

from datetime import timedelta

from console.api import Failover, ProxyCerts, UpstreamEndpoints
from console.checks import judge_polls
from console.collect import Poll
from console.models.checks import (
    PortUse,
    Status,
    check_clock,
    check_discovery,
    check_port,
    exit_code,
)
from console.sources import Source
from tests.console.scenes import NOW, certs_json


def poll(name: str, leaf_left: timedelta, **kwargs) -> Poll:
    return Poll(Source(name, "unix", f"/run/vmesh/{name}.sock"), True, ready=True,
                certs=ProxyCerts.from_json(name, certs_json(name, leaf_left, name)),
                server_date=NOW, **kwargs)


def test_expired_leaf_fails_with_reason_and_hint() -> None:
    findings = judge_polls([poll("api", -timedelta(minutes=5))], NOW)
    [expired] = [f for f in findings if f.reason == "certs.leaf_expired"]
    assert expired.status is Status.FAIL
    assert expired.target == "leaf of api"
    assert "expired" in expired.line() and "hint:" in expired.line()
    assert exit_code(findings) == 1


def test_healthy_proxy_passes_and_shared_cas_are_checked_once() -> None:
    findings = judge_polls([poll("api", timedelta(hours=20)), poll("web", timedelta(hours=20))],
                           NOW)
    assert exit_code(findings) == 0
    assert [f.reason for f in findings].count("certs.issuer_ok") == 1
    assert {f.check for f in findings} == {"admin", "certs", "clock"}


def test_unreachable_admin_fails_with_the_client_reason() -> None:
    down = Poll(Source("cache", "unix", "/run/vmesh/cache.sock"), False,
                "admin.connect_refused", "connection refused")
    [finding] = judge_polls([down], NOW)
    assert (finding.status, finding.reason) == (Status.FAIL, "admin.connect_refused")
    assert "systemctl status vmesh-proxy@cache" in finding.hint


def test_discovery_staleness() -> None:
    fresh = UpstreamEndpoints("api", "mdns", 2, NOW - timedelta(seconds=10), False)
    old = UpstreamEndpoints("store", "consul", 1, NOW - timedelta(minutes=20), False)
    kept = UpstreamEndpoints("db", "last-known-good", 1, NOW - timedelta(seconds=5), True)
    empty = UpstreamEndpoints("cache", "mdns", 0, NOW, False)
    asked = UpstreamEndpoints("queue", "-", 0, None, False)  # a watch without a first view
    findings = check_discovery("web", [fresh, old, kept, empty, asked], NOW)
    # a set unchanged for 20 minutes is not stale: backends hand on a set when it changes
    assert [(f.status, f.reason) for f in findings] == [
        (Status.OK, "discovery.fresh"), (Status.OK, "discovery.fresh"),
        (Status.WARN, "discovery.stale"), (Status.FAIL, "discovery.no_instances"),
        (Status.WARN, "discovery.first_answer_pending")]
    assert "5s old" in findings[2].message
    assert findings[4].message == "waiting for discovery's first answer"


def test_an_upstream_failed_over_to_another_site_warns_where_its_requests_go() -> None:
    since = NOW - timedelta(minutes=4)
    moved = UpstreamEndpoints("api", "consul", 0, NOW, False, failover=Failover(
        "api.east", "no_endpoints", "discovery lists no instance of api", since))
    stranded = UpstreamEndpoints("store", "consul", 0, NOW, False, failover=Failover(
        None, "no_endpoints", "discovery lists no instance of store", since))
    served, lost = check_discovery("web", [moved, stranded], NOW)
    assert (served.status, served.reason) == (Status.WARN, "discovery.failed_over")
    assert served.message == ("no instances known (source consul); requests go to api.east "
                              "instead (failed over 4m ago: no_endpoints)")
    assert "api" in served.hint and "failover" in served.hint
    # a failover that found no destination either serves nothing: still a failure
    assert (lost.status, lost.reason) == (Status.FAIL, "discovery.no_instances")


def test_clock_skew_warns_then_fails_beyond_the_certificate_backdate() -> None:
    assert check_clock("api", NOW + timedelta(seconds=2), NOW).status is Status.OK
    assert check_clock("api", NOW + timedelta(seconds=90), NOW).status is Status.WARN
    broken = check_clock("api", NOW - timedelta(minutes=6), NOW)
    assert (broken.status, broken.reason) == (Status.FAIL, "clock.skew_breaks_tls")
    assert "-360s" in broken.message


def test_a_clock_read_from_a_date_header_in_whole_seconds_is_in_sync() -> None:
    arrived = NOW.replace(microsecond=800_000)  # the same clock, 0.8 s into a second
    same = check_clock("api", arrived.replace(microsecond=0), arrived)
    assert (same.status, same.message) == (Status.OK, "in sync (+0s)")


def test_port_held_by_another_process_fails() -> None:
    other = check_port(PortUse("api", "inbound", 4143, "nginx (pid 7)", False))
    assert (other.status, other.reason) == (Status.FAIL, "ports.in_use_by_other")
    assert "nginx" in other.message
    assert check_port(PortUse("api", "inbound", 4143, None, False)).status is Status.WARN
    assert check_port(PortUse("api", "inbound", 4143, "python (pid 9)", True)).status is Status.OK
    hidden = check_port(PortUse("api", "inbound", 4143, "a process of another user", None))
    assert (hidden.status, hidden.reason) == (Status.WARN, "ports.holder_not_visible")


def test_an_upstream_whose_discovery_query_fails_is_judged_with_the_cause() -> None:
    refused = "the consul agent refused our ACL token (ACL not found)"
    empty = UpstreamEndpoints("api", "consul", 0, NOW, True, error=refused)
    kept = UpstreamEndpoints("store", "consul", 2, NOW - timedelta(seconds=5), True,
                             error="consul: timed out")
    none, stale = check_discovery("web", [empty, kept], NOW)
    assert (none.status, none.reason) == (Status.FAIL, "discovery.no_instances")
    assert none.message == f"no instances known (source consul; its last query failed: {refused})"
    assert none.hint == "the discovery backend fails to answer for api: fix what it says"
    assert (stale.status, stale.reason) == (Status.WARN, "discovery.stale")
    assert stale.message == ("stale: 2 instance(s) from consul, 5s old; its last query failed: "
                             "consul: timed out")
