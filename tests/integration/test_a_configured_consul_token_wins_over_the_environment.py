"""The Consul ACL token in mesh.toml's `[discovery]` (`consul_token`) is the one the proxy sends,
whatever CONSUL_HTTP_TOKEN says (as Consul's own tools rank an explicit setting above the
environment); the environment's applies only when mesh.toml has none. A token the agent does
not know is named as such by the proxy and by `vmesh check`, not taken for an agent that is
down. The agent is tests/fake_consul.py enforcing ACLs."""

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fake_consul import FakeConsul
from tests.integration.mesh import REPO, Mesh, wait_until

TOKEN = "6f0b2c1e-configured"


@pytest.fixture
def acl_agent() -> Iterator[FakeConsul]:
    agent = FakeConsul(acl_token=TOKEN)
    agent.start()
    yield agent
    agent.stop()


def registered(agent: FakeConsul, service: str) -> bool:
    return any(s.name == service for s in agent.services.values())


def tokens_sent_by_a_proxy(root: Path, agent: FakeConsul, discovery: str) -> set[str | None]:
    """The ACL tokens the agent received while a proxy with mesh.toml's `[discovery]` body
    `discovery` started and registered."""
    mesh = Mesh(root, discovery=discovery)
    name = f"api{secrets.token_hex(3)}"
    try:
        mesh.start_proxy(name, 1)
        wait_until(lambda: registered(agent, name), within=15, what="the registration")
    finally:
        mesh.stop()
    return set(agent.tokens)


def test_the_configured_token_is_sent_though_the_environment_names_another(
        tmp_path: Path, acl_agent: FakeConsul, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-the-environment")
    discovery = acl_agent.discovery_table() + f'consul_token = "{TOKEN}"\n'
    assert tokens_sent_by_a_proxy(tmp_path, acl_agent, discovery) == {TOKEN}


def test_the_environment_token_applies_when_mesh_toml_has_none(
        tmp_path: Path, acl_agent: FakeConsul, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", TOKEN)
    assert tokens_sent_by_a_proxy(tmp_path, acl_agent, acl_agent.discovery_table()) == {TOKEN}


def test_a_token_the_agent_does_not_know_is_named_by_the_proxy_and_vmesh_check(
        tmp_path: Path, acl_agent: FakeConsul, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
    mesh = Mesh(tmp_path, discovery=acl_agent.discovery_table() + 'consul_token = "revoked"\n')
    name = f"api{secrets.token_hex(3)}"
    try:
        proxy = mesh.start_proxy(name, 1)
        refused = proxy.wait_for_log(lambda r: r.get("event") == "discovery_consul_acl_refused")
        assert refused["error"] == "ACL not found" and refused["level"] == "error"
        with proxy.admin() as admin:
            ready = admin.get("/ready")
        assert ready.status_code == 503
        assert "the agent refused the ACL token (ACL not found)" in ready.text
        check = subprocess.run([sys.executable, "-m", "vm_mesh", "check", "--json"], cwd=REPO,
                               env=mesh.env, capture_output=True, text=True, timeout=60)
    finally:
        mesh.stop()
    findings = [json.loads(line) for line in check.stdout.splitlines()]
    (consul,) = [f for f in findings if f["check"] == "discovery" and "consul" in f["target"]]
    assert consul["status"] == "fail" and consul["reason"] == "discovery.consul_acl_refused"
    assert "refused the ACL token (ACL not found)" in consul["message"]
    assert "consul_token" in consul["hint"]
    assert not registered(acl_agent, name)
    assert httpx.get(f"http://127.0.0.1:{acl_agent.port}/v1/agent/services").json() == {}


def test_watches_the_agent_refuses_for_the_token_say_so_to_the_log_and_the_caller(
        tmp_path: Path, acl_agent: FakeConsul, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
    mesh = Mesh(tmp_path, discovery=acl_agent.discovery_table() + 'consul_token = "revoked"\n')
    try:
        proxy = mesh.start_proxy(f"api{secrets.token_hex(3)}", 1)
        policy = proxy.wait_for_log(lambda r: r.get("event") == "discovery_consul_acl_refused"
                                    and "policy" in r["msg"])
        answer = httpx.get(f"http://{proxy.outbound}/", headers={"host": "web"}, timeout=30)
        watch = proxy.wait_for_log(lambda r: r.get("event") == "discovery_consul_acl_refused"
                                   and r.get("dst_service") == "web")
        with proxy.admin() as admin:
            [web] = admin.get("/v1/endpoints").json()["upstreams"]
    finally:
        mesh.stop()
    # the caller is told why there is no instance, not only that there is none
    assert (answer.status_code, answer.headers["vmesh-error"]) == (503, "no_endpoints")
    assert answer.text.endswith("outbound: discovery lists no instance of web; its last query "
                                "failed: the consul agent refused our ACL token (ACL not found) "
                                "(no_endpoints)\n"), answer.text
    assert "a token that may read the keys under vmesh/policy/ (retrying)" in policy["msg"]
    assert (watch["level"], watch["error"]) == ("error", "ACL not found")
    assert "a token that may read web (retrying)" in watch["msg"]
    # and the console's endpoints view and `vmesh check`, which read /v1/endpoints
    assert (web["service"], web["stale"], web["error"]) == (
        "web", True, "the consul agent refused our ACL token (ACL not found)")
    generic = [r for r in proxy.logs if r.get("event") in ("discovery_consul_error",
                                                           "policy_consul_error")]
    assert generic == []
