"""Inbound authorization glue: route-aware decisions, event annotation, the 403 a caller sees."""

import json
import logging

import pytest

from proxy.events import RequestEvent
from proxy.inbound_policy import InboundAuthorization, annotate, forbidden_response
from proxy.normalize import normalize_target
from proxy.traffic import TrafficPolicy
from tests.unit.policy_helpers import policy

STORE = """\
kind: HTTPRoute
name: reads
service: store
rules:
  - matches: [{path: {prefix: /items}, method: GET}]
---
kind: Authorization
service: store
mode: audit
default: deny
rules:
  - {name: readers, from: ["spiffe://vmesh.local/svc/*"], routes: [reads]}
---
kind: Authorization
name: tcp
service: db
default: deny
rules:
  - {name: api-only, from: ["spiffe://vmesh.local/svc/api"]}
  - {name: never, from: ["spiffe://vmesh.local/svc/web"], methods: [GET]}
"""


def gate(service: str) -> InboundAuthorization:
    traffic = TrafficPolicy(policy(STORE), "vmesh.local")
    return InboundAuthorization(service, lambda: traffic)


def test_route_names_in_rules_use_the_normalized_path(caplog: pytest.LogCaptureFixture) -> None:
    store = gate("store")
    api = "spiffe://vmesh.local/svc/api"
    assert store.check_http(api, "GET", normalize_target("/x/..//items/1")).rule == "store.readers"
    with caplog.at_level(logging.WARNING, logger="vmesh.proxy.authz"):
        decision = store.check_http(api, "POST", normalize_target("/items/1"))
    assert (decision.verdict, decision.rule) == ("audit", "store.default")
    [record] = caplog.records
    assert record.getMessage() == "audit: request would be denied"
    assert record.__dict__["reason"] == "authz.default_deny"


def test_opaque_tcp_matches_only_rules_without_method_or_path() -> None:
    db = gate("db")
    assert db.check_tcp("spiffe://vmesh.local/svc/api").verdict == "allow"
    assert db.check_tcp("spiffe://vmesh.local/svc/web").verdict == "deny"
    assert db.check_tcp(None).verdict == "deny"


def test_denial_is_annotated_and_answered_with_403() -> None:
    decision = gate("db").check_tcp(None)
    event = RequestEvent(0, "1", "inbound", "127.0.0.1:9", dst_service="db")
    annotate(event, decision)
    assert event.to_tap()["policy"] == {"decision": "deny", "rule": "tcp.default"}
    assert event.error == "authz.default_deny"
    status, headers, body = forbidden_response(decision)
    assert status == 403
    assert ("vmesh-error", "authz.default_deny") in headers
    assert json.loads(body) == {"error": "forbidden", "reason": "authz.default_deny",
                                "rule": "tcp.default"}


CALLERS_ONLY = """\
kind: Authorization
service: ledger
default: deny
rules:
  - {name: billing, from: ["spiffe://vmesh.local/svc/billing"]}
"""


def test_rules_naming_only_callers_decide_each_request_of_a_caller_alike(
    caplog: pytest.LogCaptureFixture,
) -> None:
    traffic = TrafficPolicy(policy(CALLERS_ONLY), "vmesh.local")
    ledger = InboundAuthorization("ledger", lambda: traffic)
    billing, web = "spiffe://vmesh.local/svc/billing", "spiffe://vmesh.local/svc/web"
    for path in ("/a", "/b?x=1", "/"):
        assert ledger.check_http(billing, "POST", normalize_target(path)).rule == "ledger.billing"
    with caplog.at_level(logging.WARNING, logger="vmesh.proxy.authz"):
        first = ledger.check_http(web, "GET", normalize_target("/a"))
        second = ledger.check_http(web, "DELETE", normalize_target("/b"))
    assert (first.verdict, second.verdict) == ("deny", "deny")
    assert [(r.__dict__["method"], r.__dict__["path"]) for r in caplog.records] == [
        ("GET", "/a"), ("DELETE", "/b"),
    ]
