"""Roles vmesh, vmesh_identity and vmesh_proxy, run by the real ansible-playbook on this
machine as one host (the CA, running service `api` and a cert-helper): what an operator who
runs site.yml again relies on. A second run changes nothing; `--check` completes on a deployed
host and on a fresh one, changing nothing; a change the proxy reloads on SIGHUP (mesh.toml's
tracing, a service's timeouts) reaches it without a handover; a bad value in mesh.toml or a
service file fails the play with the validator's `file:line: reason` and leaves the file in
force and the proxy serving it; a bad variable fails before anything is written, naming it;
the join token never reaches the output, even with -vvv. upgrade.yml and rotate-certs.yml
under `--check` complete and change nothing: a host at the asked version is left alone, one
that is not is reported as one that would be upgraded."""

import json
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import vm_mesh
from tests.e2e.playbooks import PlaybookRun as Run
from tests.integration.ansible_host import LocalHost
from tests.integration.mesh import REPO, wait_until
from tests.integration.supervised import admin_get


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalHost, Run]]:
    """The host after a first run (with -vvv, as an operator debugging would); that run."""
    host = LocalHost(tmp_path_factory.mktemp("ansible"))
    try:
        first = host.playbook("-vvv")
        assert first.returncode == 0, first.output[-4000:]
        yield host, first
    finally:
        host.stop()


def proxy_pid(host: LocalHost) -> int:
    """The PID of api's running proxy (a handover would replace it), once it is ready."""
    assert admin_get(host.root, "api", "/ready").status_code == 200
    supervisor = psutil.Process(int((host.root / "run/vmesh/svc-api.pid").read_text()))
    [proxy] = [child for child in supervisor.children() if "proxy" in child.cmdline()]
    return proxy.pid


def test_the_join_token_never_reaches_the_output(deployed: tuple[LocalHost, Run]) -> None:
    host, first = deployed
    assert "Exchange the token for the first certificate - api" in first.output
    assert "Exchange the token for the first certificate - scraper" in first.output
    assert (host.root / "var/lib/vmesh/scraper/cert.pem").is_file()
    assert "vmesh1." not in first.output  # every join token starts so


def test_a_second_run_changes_nothing(deployed: tuple[LocalHost, Run]) -> None:
    host, _ = deployed
    again = host.playbook()
    assert again.returncode == 0 and again.changed() == {"localhost": 0}, again.output[-4000:]


def test_check_mode_on_a_deployed_host_completes_and_changes_nothing(
    deployed: tuple[LocalHost, Run],
) -> None:
    host, _ = deployed
    pid = proxy_pid(host)
    check = host.playbook("--check")
    assert check.returncode == 0 and check.changed() == {"localhost": 0}, check.output[-4000:]
    assert proxy_pid(host) == pid


def state_files(host: LocalHost) -> dict[Path, bytes]:
    """The CA's state and api's key, certificates and bundle, byte for byte."""
    return {path: path.read_bytes() for name in ("identity", "api")
            for path in (host.root / "var/lib/vmesh" / name).rglob("*") if path.is_file()}


def test_check_mode_of_an_upgrade_to_the_running_version_changes_nothing(
    deployed: tuple[LocalHost, Run],
) -> None:
    host, _ = deployed
    pid = proxy_pid(host)
    check = host.playbook("--check", play=REPO / "ansible/upgrade.yml",
                          vmesh_version=vm_mesh.__version__)
    assert check.returncode == 0 and check.changed() == {"localhost": 0}, check.output[-4000:]
    assert "upgraded to" not in check.output
    assert proxy_pid(host) == pid


def test_check_mode_of_an_upgrade_reports_the_host_it_would_upgrade_and_touches_nothing(
    deployed: tuple[LocalHost, Run], tmp_path: Path,
) -> None:
    host, _ = deployed
    pid, files = proxy_pid(host), state_files(host)
    # the release on the controller, which --check compares with the host's copy, never installs
    (tmp_path / "vmesh-9.9.9-py3-none-any.whl").write_bytes(b"the 9.9.9 release")
    check = host.playbook("--check", play=REPO / "ansible/upgrade.yml",
                          vmesh_version="9.9.9", vmesh_wheel_dir=str(tmp_path))
    assert check.returncode == 0, check.output[-4000:]
    assert check.changed()["localhost"] > 0  # the wheel it would copy and install
    assert "vmesh rollout (check mode): localhost would be upgraded to 9.9.9" in check.output
    assert not (host.root / "opt/vmesh/wheels/vmesh-9.9.9-py3-none-any.whl").exists()
    assert proxy_pid(host) == pid  # not drained, not handed over
    assert state_files(host) == files


def test_check_mode_of_a_certificate_rotation_completes_and_changes_nothing(
    deployed: tuple[LocalHost, Run],
) -> None:
    host, _ = deployed
    pid, files = proxy_pid(host), state_files(host)
    check = host.playbook("--check", play=REPO / "ansible/rotate-certs.yml")
    assert check.returncode == 0 and check.changed() == {"localhost": 0}, check.output[-4000:]
    assert ("vmesh rotation (check mode): would add a new anchor and issuer on localhost, renew "
            "every leaf from that issuer and then retire generations 1") in " ".join(
                check.output.split())
    assert state_files(host) == files  # no new generation, no renewed leaf, no new bundle
    assert proxy_pid(host) == pid


def test_a_join_token_the_ca_refuses_to_make_fails_saying_why(tmp_path: Path) -> None:
    host = LocalHost(tmp_path)
    try:
        run = host.playbook(vmesh_proxy_token_ttl="forever")
    finally:
        host.stop()
    assert run.returncode != 0
    assert ("no join token for api on localhost from localhost: vmesh: --ttl: "
            in " ".join(run.output.split())), run.output[-4000:]
    assert not (host.root / "var/lib/vmesh/api/cert.pem").exists()


def test_check_mode_on_a_fresh_host_completes_and_writes_nothing(tmp_path: Path) -> None:
    host = LocalHost(tmp_path)
    check = host.playbook("--check")
    assert check.returncode == 0, check.output[-4000:]
    assert check.changed()["localhost"] > 0  # what a real run would do
    assert not (host.root / "etc/vmesh/mesh.toml").exists()
    assert not (host.root / "etc/vmesh/services/api.toml").exists()
    assert not list((host.root / "run/vmesh").iterdir())  # nothing started


def events_logged(host: LocalHost, after: int) -> set[str]:
    """The `event`s api's supervisor and proxy logged past byte `after` of their log."""
    with (host.root / "var/log/vmesh/svc-api.log").open("rb") as log:
        log.seek(after)
        lines = log.read().decode().splitlines()
    return {json.loads(line).get("event", "") for line in lines if line.startswith("{")}


def test_a_tracing_or_timeouts_change_reaches_the_running_proxy_by_a_reload(
    deployed: tuple[LocalHost, Run],
) -> None:
    host, _ = deployed
    log_size = (host.root / "var/log/vmesh/svc-api.log").stat().st_size
    pid = proxy_pid(host)
    run = host.playbook(vmesh_tracing_otlp_endpoint="http://127.0.0.1:9/v1/traces",
                        vmesh_proxy_services=[{**host.service, "drain_timeout": "3s"}])
    assert run.returncode == 0 and run.changed()["localhost"] > 0, run.output[-4000:]
    wait_until(lambda: {"config_reloaded", "tracing_enabled"} <= events_logged(host, log_size),
               within=10, what="the proxy reloading its service file and mesh.toml's tracing")
    assert proxy_pid(host) == pid  # reloaded (SIGHUP), not handed over to a new proxy
    restored = host.playbook()
    assert restored.returncode == 0 and restored.changed()["localhost"] > 0, restored.output[-4000:]
    wait_until(lambda: "tracing_disabled" in events_logged(host, log_size), within=10,
               what="the proxy no longer exporting spans")
    assert proxy_pid(host) == pid


@pytest.mark.parametrize(("file", "variables", "reason"), [
    ("mesh.toml", {"vmesh_tracing_otlp_endpoint": "collector:4318"},
     "tracing.otlp_endpoint: 'collector:4318' is not a URL"),
    ("services/api.toml", {"drain_timeout": "soon"}, "timeouts.drain:"),
], ids=["mesh.toml", "service file"])
def test_a_bad_config_value_fails_with_the_validators_reason_and_keeps_the_file(
    deployed: tuple[LocalHost, Run], file: str, variables: dict, reason: str,
) -> None:
    host, _ = deployed
    path = host.root / "etc/vmesh" / file
    before, pid = path.read_text(), proxy_pid(host)
    if file == "mesh.toml":
        run = host.playbook(**variables)
    else:
        run = host.playbook(vmesh_proxy_services=[{**host.service, **variables}])
    assert run.returncode != 0
    assert reason in run.output, run.output[-4000:]
    assert path.read_text() == before
    assert proxy_pid(host) == pid  # not handed over to a proxy that would read it


@pytest.mark.parametrize(("item", "message"), [
    ({"app_port": 8080, "command": ["/bin/app"]},
     "vmesh_proxy_services[0] needs name (a service name: lowercase letters, digits, '-')"),
    ({"name": "Api_1", "app_port": 8080, "command": ["/bin/app"]},
     "vmesh_proxy_services[0] needs name (a service name: lowercase letters, digits, '-'), "
     "not 'Api_1'"),
    ({"name": "api", "app_port": "http", "command": ["/bin/app"]},
     "vmesh_proxy_services[0] (api) needs app_port (1-65535), not 'http'"),
    ({"name": "api", "app_port": 8080, "command": "/bin/app --port 8080"},
     "vmesh_proxy_services[0] (api) needs command as a list (argv), "
     "not '/bin/app --port 8080'"),
])
def test_a_bad_service_item_fails_naming_it_before_anything_is_written(
    deployed: tuple[LocalHost, Run], item: dict, message: str,
) -> None:
    host, _ = deployed
    files = {p: p.read_text() for p in (host.root / "etc/vmesh").rglob("*.toml")}
    pid = proxy_pid(host)
    run = host.playbook(vmesh_proxy_services=[item])
    assert run.returncode != 0
    assert message in " ".join(run.output.split()), run.output[-4000:]
    assert {p: p.read_text() for p in (host.root / "etc/vmesh").rglob("*.toml")} == files
    assert proxy_pid(host) == pid


def test_an_unknown_service_manager_fails_naming_the_choices(
    deployed: tuple[LocalHost, Run],
) -> None:
    host, _ = deployed
    pid = proxy_pid(host)
    run = host.playbook(vmesh_service_manager="upstart")
    assert run.returncode != 0
    assert ('vmesh_service_manager must be "systemd", "process" or "" (detect), not "upstart"'
            in " ".join(run.output.split())), run.output[-4000:]
    assert proxy_pid(host) == pid
