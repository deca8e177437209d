"""`vmesh check` reads this host's policy files beside its service files: an Authorization
for a service that no service file of the host names (a misspelling, most often) is a
warning naming its file and line, and a policy that does not load fails the check."""

from __future__ import annotations

import json
from pathlib import Path

from tests.console.test_cli_twins_print_columns_and_json import vmesh
from vm_mesh import paths

OPTIONS = ("--json", "--no-local", "--no-host-discovery")


def policy_findings() -> list[dict]:
    check = vmesh("check", *OPTIONS)
    return [f for f in map(json.loads, check.stdout.splitlines()) if f["check"] == "policy"]


def test_an_authorization_for_no_service_here_warns_and_a_broken_policy_fails(
    vmesh_root: Path,
) -> None:
    paths.service_config("store").parent.mkdir(parents=True)
    paths.service_config("store").write_text("")
    paths.policy_dir().mkdir(parents=True)
    authz = paths.policy_dir() / "authz.yaml"
    authz.write_text("kind: Authorization\nservice: store\ndefault: deny\n---\n"
                     "kind: Authorization\nservice: stroe\ndefault: deny\n")

    assert [(f["status"], f["target"], f["message"], f["reason"])
            for f in policy_findings()] == [
        ("ok", str(paths.policy_dir()), "loads", "policy.ok"), (
        "warn", f"{authz}:5",
        "Authorization stroe: no service file of this host is for service 'stroe' "
        "(did you mean 'store'?), so it protects nothing here",
        "policy.unknown_service")]

    authz.write_text("kind: Authorization\nservice: store\n")
    assert [(f["status"], f["target"], f["reason"]) for f in policy_findings()] == [
        ("fail", str(paths.policy_dir()), "policy.invalid")]
