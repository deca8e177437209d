"""site.yml over SSH: vmesh on every host, the CA serving, services joined and reachable from
other hosts over mTLS, a second run changes nothing."""

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.playbooks import (
    PlaybookRun,
    build_wheel,
    build_wheelhouse,
    run_playbook,
    service_vars,
)
from tests.e2e.sshhosts import SshCluster
from tests.integration.mesh import wait_until
from tests.support import require_tool

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def deployed(three_hosts: SshCluster) -> Iterator[tuple[SshCluster, Path, dict, PlaybookRun]]:
    wheels = build_wheel(three_hosts.workdir)
    wheelhouse = build_wheelhouse(three_hosts.workdir, wheels / "vmesh-0.1.0-py3-none-any.whl")
    ca, front, api = three_hosts.hosts
    suffix = secrets.token_hex(3)
    inventory = three_hosts.write_inventory(
        three_hosts.workdir / "site.ini",
        groups={"vmesh_ca": [ca.name], "vmesh_hosts": [front.name, api.name]},
        host_vars={front.name: service_vars(front, f"front-{suffix}"),
                   api.name: service_vars(api, f"api-{suffix}")},
    )
    extra = {"vmesh_wheel_dir": str(wheels), "vmesh_manage_user": "false",
             "vmesh_service_manager": "process",
             "vmesh_pip_extra_args": f"--no-index --find-links {wheelhouse}"}
    first = run_playbook(three_hosts, inventory, "site.yml", extra)
    assert first.returncode == 0, first.output[-4000:]
    yield three_hosts, inventory, extra, first


def test_every_host_gets_its_own_vmesh_of_the_asked_version(deployed) -> None:
    cluster, *_ = deployed
    for host in cluster.hosts:
        vmesh = host.vmesh_root / "opt/vmesh/venv/bin/vmesh"
        result = host.run(str(vmesh), "--version")
        assert result.returncode == 0, result.stderr
        assert "0.1.0" in result.stdout
        assert (host.vmesh_root / "etc/vmesh/mesh.toml").is_file()


def test_the_ca_host_serves_certificates_from_its_own_anchor(deployed) -> None:
    cluster, *_ = deployed
    ca = cluster.hosts[0]
    status = ca.run(str(ca.vmesh_root / "opt/vmesh/venv/bin/vmesh"), "identity", "status",
                    "--json")
    assert status.returncode == 0, status.stderr
    assert (ca.vmesh_root / "var/lib/vmesh/identity/bundle.pem").is_file()
    assert not (cluster.hosts[1].vmesh_root / "var/lib/vmesh/identity").exists()
    result = cluster.hosts[1].run(
        "curl", "-sS", "--cacert", str(ca.vmesh_root / "var/lib/vmesh/identity/bundle.pem"),
        "-o", "/dev/null", "-w", "%{http_code}", f"https://{ca.address}:8443/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.isdigit(), "no HTTP answer over TLS verified by the CA bundle"


def test_a_request_crosses_hosts_over_mtls_between_the_joined_services(deployed) -> None:
    require_tool("curl")
    cluster, *_ = deployed
    _, front, api = cluster.hosts
    front_service = _service_of(front)
    api_service = _service_of(api)
    answers: list[tuple[str, str]] = []

    def answered() -> bool:
        result = front.run("curl", "-sS", "-m", "5", "-H", f"Host: {api_service}",
                           "-w", "\n%{http_code}", "http://127.0.0.1:4140/hello")
        body, _, status = result.stdout.rpartition("\n")
        answers.append((status, body))
        return status == "200"

    # the front proxy watches api from its first request on: the first may find no instance yet
    wait_until(answered, within=15, what=f"{api_service} answering through the front proxy")
    answer = json.loads(answers[-1][1])
    assert answer["name"] == f"{api_service}@{api.name}"
    assert answer["client_id"] == f"spiffe://vmesh.local/svc/{front_service}"


def _service_of(host) -> str:
    return next(p.stem for p in (host.vmesh_root / "etc/vmesh/services").glob("*.toml"))


def test_a_second_run_changes_nothing_and_keeps_the_anchor(deployed) -> None:
    cluster, inventory, extra, _ = deployed
    anchor = cluster.hosts[0].vmesh_root / "var/lib/vmesh/identity/bundle.pem"
    before = anchor.read_bytes()
    second = run_playbook(cluster, inventory, "site.yml", extra)
    assert second.returncode == 0, second.output[-4000:]
    assert second.changed() == {h.name: 0 for h in cluster.hosts}, second.output[-4000:]
    assert anchor.read_bytes() == before
