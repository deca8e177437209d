"""An Authorization document that decides nothing, or that names no service of this host,
protects nothing while its author believes it does. One without rules or a default is
refused with its file and line (the policy in force stays); one for a service no service
file of the host names is a warning with its file and line, at every load of the proxy's
policy."""

import logging
from pathlib import Path

import pytest

from proxy.authz import Authorizer, AuthzRequest
from tests.unit.policy_helpers import policy
from vm_mesh import paths
from vm_mesh.policy.files import PolicyInvalid
from vm_mesh.policy.loader import load_texts
from vm_mesh.policy.store import PolicyStore
from vm_mesh.policy.unprotected import unknown_services

API = "spiffe://vmesh.local/svc/api"
WEB = "spiffe://vmesh.local/svc/web"
GUARD = "kind: Authorization\nservice: store\ndefault: deny\n"


def errors_of(*texts: tuple[str, str]) -> list[tuple[str, str]]:
    with pytest.raises(PolicyInvalid) as caught:
        load_texts(texts)
    return [(str(e), e.code) for e in caught.value.errors]


def test_an_authorization_without_rules_or_default_is_refused_with_its_line() -> None:
    text = f"{GUARD}---\nkind: Authorization\nname: store-readers\nservice: store\nrules: []\n"
    assert errors_of(("a.yaml", "kind: Authorization\nservice: store\n"), ("b.yaml", text)) == [
        ("a.yaml:1: Authorization store: decides nothing: it has no rules and no default; "
         "give it rules, or a default (deny, allow-mesh, allow-all)",
         "policy.empty_authorization"),
        ("b.yaml:8: Authorization store-readers: decides nothing: it has no rules and no "
         "default; give it rules, or a default (deny, allow-mesh, allow-all)",
         "policy.empty_authorization"),
    ]


def test_a_default_alone_decides_and_loads() -> None:
    assert len(policy(GUARD)) == 1


def test_a_reload_to_an_empty_authorization_keeps_the_policy_in_force(tmp_path: Path) -> None:
    authz = tmp_path / "authz.yaml"
    authz.write_text(GUARD)
    store = PolicyStore(tmp_path)
    store.load_initial()
    authz.write_text("kind: Authorization\nservice: store\n")
    assert not store.reload()
    assert store.describe()["refused"] == [
        f"{authz}:1: Authorization store: decides nothing: it has no rules and no default; "
        "give it rules, or a default (deny, allow-mesh, allow-all)"]
    assert Authorizer("store", store.current, "vmesh.local").decide(
        AuthzRequest(API, "GET", "/")).verdict == "deny"


MISSPELLED = f"""\
{GUARD}---
kind: Authorization
name: orders
service: stroe
default: deny
---
kind: Authorization
default: allow-mesh
"""


def test_an_authorization_for_no_service_of_the_host_is_named_with_its_line() -> None:
    loaded = policy(MISSPELLED, "authz.yaml")
    assert [(str(w), w.code) for w in unknown_services(loaded, ["api", "store"])] == [
        ("authz.yaml:5: Authorization orders: no service file of this host is for service "
         "'stroe' (did you mean 'store'?), so it protects nothing here",
         "policy.unknown_service")]


def test_the_proxy_logs_it_at_each_load_that_changes_the_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("VMESH_ROOT", str(tmp_path))
    paths.service_config("store").parent.mkdir(parents=True)
    paths.service_config("store").write_text("")
    paths.policy_dir().mkdir(parents=True)
    authz = paths.policy_dir() / "authz.yaml"
    authz.write_text(GUARD)
    store = PolicyStore()
    with caplog.at_level(logging.WARNING, logger="vmesh.policy"):
        store.load_initial()
        assert not caplog.records
        authz.write_text(MISSPELLED)
        assert store.reload()
        store.reload()  # the same policy again: said once is enough
    assert [(r.getMessage(), r.code, r.file, r.line) for r in caplog.records] == [(
        f"{authz}:5: Authorization orders: no service file of this host is for service "
        "'stroe' (did you mean 'store'?), so it protects nothing here",
        "policy.unknown_service", str(authz), 5)]
