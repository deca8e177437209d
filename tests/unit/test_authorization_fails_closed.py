"""Inbound authorization: deny rules win, defaults compose to the strictest, audit never loosens."""

from hypothesis import given
from hypothesis import strategies as st

from proxy import authz
from proxy.authz import Authorizer, AuthzDecision, AuthzRequest
from tests.unit.policy_helpers import policy

API = "spiffe://vmesh.local/svc/api"
WEB = "spiffe://vmesh.local/svc/web"
FOREIGN = "spiffe://other.example/svc/api"

STORE = """\
kind: HTTPRoute
name: items
service: store
rules:
  - matches: [{path: {prefix: /items}}]
---
kind: Authorization
name: store-access
service: store
default: deny
rules:
  - name: api-reads
    from: ["spiffe://vmesh.local/svc/api"]
    methods: [GET, PUT]
    paths: ["/items/*"]
  - name: no-admin
    action: deny
    paths: ["/items/admin"]
  - from: ["spiffe://vmesh.local/svc/w*"]
    routes: [items]
"""


def decide(text: str, peer: str | None, method: str = "GET", path: str = "/items/1",
           route: str | None = None, service: str = "store") -> AuthzDecision:
    authorizer = Authorizer(service, policy(text), "vmesh.local")
    return authorizer.decide(AuthzRequest(peer, method, path, route))


def test_allowed_caller_names_the_rule() -> None:
    expected = AuthzDecision("allow", "store-access.api-reads", authz.ALLOWED_BY_RULE)
    assert decide(STORE, API) == expected


def test_deny_rule_wins_over_allow_rule() -> None:
    decision = decide(STORE, API, path="/items/admin")
    assert decision == AuthzDecision("deny", "store-access.no-admin", authz.DENIED_BY_RULE)
    assert not decision.allowed


def test_unmatched_requests_fall_to_the_default() -> None:
    assert decide(STORE, API, method="DELETE").reason == authz.DEFAULT_DENY
    assert decide(STORE, API, path="/items/1/2").rule == "store-access.default"  # * is one segment
    assert decide(STORE, None).verdict == "deny"
    assert decide(STORE, FOREIGN).verdict == "deny"


def test_route_and_glob_conditions() -> None:
    assert decide(STORE, WEB, route="items").rule == "store-access.rules[2]"
    assert decide(STORE, WEB, route=None).verdict == "deny"
    assert decide(STORE, "spiffe://vmesh.local/svc/w/x", route="items").verdict == "deny"


def test_opaque_connections_meet_deny_rules_whatever_they_carry() -> None:
    """An opaque connection has no method or path: allow rules naming them never admit it,
    deny rules naming them refuse it by their `from` alone."""
    text = (
        "kind: Authorization\nname: a\nservice: store\ndefault: deny\nrules:\n"
        "  - {name: api, from: ['spiffe://vmesh.local/svc/api']}\n"
        "  - {name: web-reads, from: ['spiffe://vmesh.local/svc/web'], methods: [GET]}\n"
        "  - {name: api-admin, action: deny, from: ['spiffe://vmesh.local/svc/api'],\n"
        "     paths: ['/admin/**']}\n"
    )
    assert decide(text, API, path="/items/1").verdict == "allow"
    opaque = Authorizer("store", policy(text), "vmesh.local")
    assert opaque.decide(AuthzRequest(API, None, None)) == AuthzDecision(
        "deny", "a.api-admin", authz.DENIED_BY_RULE
    )
    assert opaque.decide(AuthzRequest(WEB, None, None)).rule == "a.default"
    without_deny = Authorizer("store", policy(text.split("  - {name: api-admin")[0]),
                              "vmesh.local")
    assert without_deny.decide(AuthzRequest(API, None, None)).rule == "a.api"


def test_builtin_default_admits_only_the_mesh() -> None:
    assert decide("kind: Mirror\nservice: x\nto: y\npercent: 1\n", API).verdict == "allow"
    empty = "kind: Mirror\nservice: x\nto: y\npercent: 1\n"
    assert decide(empty, None) == AuthzDecision("deny", "builtin.default", authz.UNAUTHENTICATED)
    assert decide(empty, FOREIGN) == AuthzDecision(
        "deny", "builtin.default", authz.FOREIGN_TRUST_DOMAIN
    )


def test_strictest_default_of_a_service_wins() -> None:
    text = (
        "kind: Authorization\nname: a\nservice: store\ndefault: allow-all\n---\n"
        "kind: Authorization\nname: b\nservice: store\ndefault: allow-mesh\n---\n"
        "kind: Authorization\nname: mesh\ndefault: deny\n"
    )
    assert decide(text, None).rule == "b.default"
    assert decide(text, API).verdict == "allow"
    expected = AuthzDecision("deny", "mesh.default", authz.DEFAULT_DENY)
    assert decide(text, API, service="web") == expected


def test_mesh_wide_deny_rules_apply_to_every_service() -> None:
    text = (
        "kind: Authorization\nname: mesh\nrules:\n"
        "  - {name: no-foreign, action: deny, from: ['spiffe://other.example/**']}\n"
        "---\nkind: Authorization\nservice: store\ndefault: allow-all\n"
    )
    assert decide(text, FOREIGN).rule == "mesh.no-foreign"
    assert decide(text, None).verdict == "allow"


def test_audit_mode_lets_the_would_be_denial_through() -> None:
    text = STORE.replace("default: deny", "mode: audit\ndefault: deny")
    decision = decide(text, WEB, method="POST")
    assert decision == AuthzDecision("audit", "store-access.default", authz.DEFAULT_DENY)
    assert decision.allowed
    assert decide(text, API).verdict == "allow"
    # audit documents never loosen what is enforced: the built-in allow-mesh still holds
    assert decide(text, None) == AuthzDecision("deny", "builtin.default", authz.UNAUTHENTICATED)


def test_audit_document_beside_an_enforced_one() -> None:
    text = (
        "kind: Authorization\nname: live\nservice: store\ndefault: allow-mesh\n---\n"
        "kind: Authorization\nname: trial\nservice: store\nmode: audit\n"
        "rules: [{name: no-web, action: deny, from: ['spiffe://vmesh.local/svc/web']}]\n"
    )
    assert decide(text, WEB).verdict == "audit"
    assert decide(text, WEB).rule == "trial.no-web"
    assert decide(text, API).verdict == "allow"


peers = st.one_of(st.none(), st.sampled_from([API, WEB, FOREIGN, "spiffe://vmesh.local/svc/x"]))
methods = st.sampled_from(["GET", "PUT", "POST", "DELETE"])
paths = st.sampled_from(["/items/1", "/items/admin", "/other", "/items/1/2"])
defaults = st.sampled_from(["deny", "allow-mesh", "allow-all"])


@given(peers, methods, paths, defaults, st.one_of(st.none(), defaults))
def test_deny_rules_and_defaults_only_ever_tighten(
    peer: str | None, method: str, path: str, first: str, second: str | None
) -> None:
    """Fail closed: adding a document with deny rules and a default never turns deny into allow."""
    base = f"kind: Authorization\nname: a\nservice: store\ndefault: {first}\n"
    extra = (
        "---\nkind: Authorization\nname: b\nservice: store\n"
        + (f"default: {second}\n" if second else "")
        + "rules: [{action: deny, paths: ['/items/admin']}]\n"
    )
    before = decide(base, peer, method, path)
    after = decide(base + extra, peer, method, path)
    if before.verdict == "deny":
        assert after.verdict == "deny"
    if path == "/items/admin":
        assert after.verdict == "deny"


@given(peers, methods, paths, defaults, defaults)
def test_audit_documents_never_change_what_is_enforced(
    peer: str | None, method: str, path: str, first: str, second: str
) -> None:
    base = f"kind: Authorization\nname: a\nservice: store\ndefault: {first}\n"
    extra = (
        f"---\nkind: Authorization\nname: b\nservice: store\nmode: audit\ndefault: {second}\n"
        "rules: [{action: deny, paths: ['/items/admin']}, {from: ['spiffe://vmesh.local/**']}]\n"
    )
    before = decide(base, peer, method, path)
    after = decide(base + extra, peer, method, path)
    assert after.allowed == before.allowed
