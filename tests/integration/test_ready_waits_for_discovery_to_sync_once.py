"""`/ready` waits for discovery to have synced once (DESIGN.md): until the backend has taken
the proxy's registration (the Consul agent accepted it, the static file was read) and, with
Consul, the first read of policy from its KV store answered, the proxy answers 503 saying
what it waits for. An agent that is down when the proxy starts keeps it unready until the
agent answers; the registration is retried, and the agent's check of `/ready` passes then
(registering never waits for the check)."""

from pathlib import Path

from tests.fake_consul import FakeConsul
from tests.integration.mesh import Mesh, ProxyProcess, start_proxy_process, wait_until
from tests.support import free_port


def ready(proxy: ProxyProcess) -> tuple[int, dict]:
    with proxy.admin() as admin:
        answer = admin.get("/ready")
    return answer.status_code, answer.json()


def test_a_proxy_is_unready_until_a_consul_agent_that_was_down_takes_its_registration(
    tmp_path: Path,
) -> None:
    agent = FakeConsul(port=free_port())  # not started: the agent is down
    mesh = Mesh(tmp_path, discovery=agent.discovery_table())
    try:
        api = mesh.start_proxy("api", 1)
        while_down = ready(api)
        agent.start()
        wait_until(lambda: ready(api)[0] == 200, within=30, what="the proxy ready")
        (entry,) = agent.services.values()
        wait_until(lambda: entry.checks[0].status == "passing", within=10,
                   what="the agent's check of /ready passing")
    finally:
        mesh.stop()
        agent.stop()

    url = f"http://127.0.0.1:{agent.port}"
    assert while_down == (503, {
        "ready": False,
        "reason": f"discovery: registering with consul at {url} "
                  "(the agent did not answer; trying again)",
    })
    assert (entry.name, entry.service_id) == ("api", "api-1")
    assert any(r.startswith("/v1/kv/vmesh/policy/") for r in agent.requests)


def test_a_proxy_on_static_discovery_is_unready_until_its_endpoints_file_is_read(
    tmp_path: Path,
) -> None:
    mesh = Mesh(tmp_path)
    mesh.configure("api", 1, instance_id="api-1")
    mesh.issue("api")
    api = start_proxy_process("api", mesh.env)
    try:
        without_file = ready(api)
        mesh.add_instance("api", api.ports["inbound"], "api-1")  # writes the endpoints file
        with_file = ready(api)
    finally:
        api.stop()

    endpoints = tmp_path / "etc/vmesh/endpoints.toml"
    assert without_file == (503, {"ready": False,
                                  "reason": f"discovery: no endpoints file at {endpoints} yet"})
    assert with_file == (200, {"ready": True, "reason": "ok"})
