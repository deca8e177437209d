"""Tap and metrics name the rule that decided. Two Authorization documents for one service
that would be known alike (both without a name) have each rule, and each default, told
apart by its document's file and line; a document known by a label of its own keeps it."""

from pathlib import Path

from proxy.authz import Authorizer, AuthzRequest
from tests.unit.policy_helpers import policy
from vm_mesh.policy.loader import load_files

API = "spiffe://vmesh.local/svc/api"
WEB = "spiffe://vmesh.local/svc/web"


def test_two_unnamed_documents_for_one_service_have_rules_told_apart(tmp_path: Path) -> None:
    for name, (caller, prefix) in {"a.yaml": (API, "/items"), "b.yaml": (WEB, "/orders")}.items():
        (tmp_path / name).write_text(
            f"kind: Authorization\nservice: store\ndefault: deny\nrules:\n"
            f"  - from: [\"{caller}\"]\n    paths: [\"{prefix}/*\"]\n")
    authorizer = Authorizer("store", load_files(sorted(tmp_path.glob("*.yaml"))), "vmesh.local")
    decide = authorizer.decide
    assert decide(AuthzRequest(API, "GET", "/items/1")).rule == "store@a.yaml:1.rules[0]"
    assert decide(AuthzRequest(WEB, "GET", "/orders/1")).rule == "store@b.yaml:1.rules[0]"
    assert decide(AuthzRequest(WEB, "GET", "/items/1")).rule == "store@a.yaml:1.default"


def test_documents_known_apart_keep_their_labels() -> None:
    loaded = policy(f"""\
        kind: Authorization
        service: store
        default: deny
        ---
        kind: Authorization
        name: readers
        service: store
        rules:
          - from: ["{API}"]
        """)
    decide = Authorizer("store", loaded, "vmesh.local").decide
    assert decide(AuthzRequest(API, "GET", "/")).rule == "readers.rules[0]"
    assert decide(AuthzRequest(WEB, "GET", "/")).rule == "store.default"
