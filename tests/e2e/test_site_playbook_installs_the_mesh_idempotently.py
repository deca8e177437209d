"""site.yml over SSH: vmesh on every host, the CA serving, a second run changes nothing."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.playbooks import PlaybookRun, build_wheel, build_wheelhouse, run_playbook
from tests.e2e.sshhosts import SshCluster

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def deployed(three_hosts: SshCluster) -> Iterator[tuple[SshCluster, Path, dict, PlaybookRun]]:
    wheels = build_wheel(three_hosts.workdir)
    wheelhouse = build_wheelhouse(three_hosts.workdir, wheels / "vmesh-0.1.0-py3-none-any.whl")
    ca, *others = three_hosts.hosts
    inventory = three_hosts.write_inventory(
        three_hosts.workdir / "site.ini",
        groups={"vmesh_ca": [ca.name], "vmesh_hosts": [h.name for h in others]},
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


def test_a_second_run_changes_nothing_and_keeps_the_anchor(deployed) -> None:
    cluster, inventory, extra, _ = deployed
    anchor = cluster.hosts[0].vmesh_root / "var/lib/vmesh/identity/bundle.pem"
    before = anchor.read_bytes()
    second = run_playbook(cluster, inventory, "site.yml", extra)
    assert second.returncode == 0, second.output[-4000:]
    assert second.changed() == {h.name: 0 for h in cluster.hosts}, second.output[-4000:]
    assert anchor.read_bytes() == before
