"""The playbooks over SSH against hosts in network namespaces: site.yml installs the CA and the
services (a request crosses hosts over mTLS; a second run changes nothing), rotate-certs.yml
and a rolling upgrade.yml keep every request of a load through the mesh answered, and a host
that fails its health check after an upgrade stops the rollout while the rest keeps serving.

The tests share one set of hosts and run in file order, each starting from the state the one
before left: host1 is the CA and runs an `api` instance, host3 runs the other `api`
instance, host2 runs `front`, from whose outbound proxy the load goes to `api`: the rollout
hands that proxy over to the new version under the load, as it does every other proxy.
"""

import contextlib
import json
import os
import pwd
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from identity import pki
from scripts.pin_dependencies import read_constraints
from tests.e2e.playbooks import (
    CONSTRAINTS,
    REPO,
    build_wheel,
    build_wheelhouse,
    release_of,
    run_playbook,
    service_vars,
)
from tests.e2e.sshhosts import SshCluster, SshHost
from tests.integration.mesh import wait_until
from tests.integration.supervised import admin_get
from tests.otlp_receiver import OtlpReceiver
from tests.support import require_tool

pytestmark = pytest.mark.e2e

LOAD_RATE = 40  # requests per second
LOAD_MAX_SECONDS = 240
OUTBOUND_PORT = 4140  # the role's default, in each host's own network namespace
ADMIN_PORT = 4191  # the role's default, on each host's loopback
SCRAPER = "scraper"  # the identity a cert-helper keeps on host2, as Prometheus' would be
SCRAPER_USER = "nobody"  # the user its program (and so the helper) runs as
VMESH_USER = "vmesh"  # the roles' default vmesh_user


@dataclass
class Mesh:
    """The deployed hosts, their inventory and the extra vars every playbook run needs."""

    cluster: SshCluster
    inventory: Path
    extra: dict[str, str]
    api: str
    front: str
    wheel: Path  # the release site.yml installs (0.1.0)

    @property
    def hosts(self) -> dict[str, SshHost]:
        return {host.name: host for host in self.cluster.hosts}

    def playbook(self, name: str, limit: str | None = None, **extra: str):
        return run_playbook(self.cluster, self.inventory, name, {**self.extra, **extra},
                            limit=limit)


@pytest.fixture(scope="module")
def vmesh_user() -> Iterator[str]:
    """The system user the roles run vmesh as (`vmesh_manage_user`, their default). The hosts
    share this machine's users, so it is made once, as the role makes it: the role then finds
    it and changes nothing, and three hosts do not race to write /etc/passwd. Removed after
    the tests when they made it."""
    require_tool("useradd")
    made = subprocess.run(["id", "-u", VMESH_USER], capture_output=True).returncode != 0
    if made:
        subprocess.run(["useradd", "--system", "--shell", "/usr/sbin/nologin", "--home-dir",
                        "/var/lib/vmesh", "--no-create-home", VMESH_USER], check=True)
    yield VMESH_USER
    if made:  # after the hosts' processes are stopped (three_hosts is torn down first)
        subprocess.run(["userdel", VMESH_USER], check=True)


@pytest.fixture(scope="module")
def mesh(vmesh_user: str, three_hosts: SshCluster) -> Iterator[Mesh]:
    wheels = build_wheel(three_hosts.workdir)
    wheel = next(wheels.glob("vmesh-0.1.0-*.whl"))
    wheelhouse = build_wheelhouse(three_hosts.workdir, wheel)
    ca, front, api = three_hosts.hosts
    suffix = secrets.token_hex(3)
    api_service, front_service = f"api-{suffix}", f"front-{suffix}"
    inventory = three_hosts.write_inventory(
        three_hosts.workdir / "site.ini",
        groups={"vmesh_ca": [ca.name], "vmesh_hosts": [front.name, api.name]},
        host_vars={ca.name: service_vars(ca, api_service),
                   # host2 is also where Prometheus would run: site.yml runs a cert-helper
                   # for its leaf, as the program's user (here `nobody`, which every machine has)
                   front.name: {**service_vars(front, front_service),
                                "vmesh_proxy_cert_helpers": f"'{json.dumps([SCRAPER])}'",
                                "vmesh_proxy_cert_helper_users":
                                    f"'{json.dumps({SCRAPER: SCRAPER_USER})}'"},
                   api.name: service_vars(api, api_service)},
    )
    extra = {"vmesh_wheel_dir": str(wheels), "vmesh_user": vmesh_user,
             "vmesh_service_manager": "process",
             "vmesh_pip_extra_args": f"--no-index --find-links {wheelhouse}"}
    deployed = Mesh(three_hosts, inventory, extra, api_service, front_service, wheel)
    first = deployed.playbook("site.yml")
    assert first.returncode == 0, first.output[-4000:]
    yield deployed


def vmesh(host: SshHost, *args: str) -> subprocess.CompletedProcess[str]:
    return host.run(str(host.vmesh_root / "opt/vmesh/venv/bin/vmesh"), *args)


def admin(host: SshHost, service: str, path: str) -> dict:
    """GET on a proxy's local admin socket (a path socket: reachable from any namespace)."""
    return admin_get(host.vmesh_root, service, path).json()


def api_instances_known_to_front(mesh: Mesh) -> set[str]:
    upstreams = admin(mesh.hosts["host2"], mesh.front, "/v1/endpoints")["upstreams"]
    return {i["id"] for u in upstreams if u["service"] == mesh.api for i in u["instances"]}


def get_through_front(mesh: Mesh) -> tuple[str, str]:
    """curl from host2's app side through its outbound proxy to `api`: (status, body)."""
    result = mesh.hosts["host2"].run(
        "curl", "-sS", "-m", "5", "-H", f"Host: {mesh.api}", "-w", "\n%{http_code}",
        f"http://127.0.0.1:{OUTBOUND_PORT}/hello")
    body, _, status = result.stdout.rpartition("\n")
    return status, body


@dataclass
class LoadResult:
    ok: int = 0
    failed: int = 0
    failures: list | None = None
    backends: dict | None = None
    seconds: float = 0.0


@contextlib.contextmanager
def load_through_front(mesh: Mesh) -> Iterator[LoadResult]:
    """A bounded load (count and time) from host2 to `api` for the duration of the block;
    the result is filled in when the block ends."""
    front = mesh.hosts["host2"]
    wait_until(lambda: api_instances_known_to_front(mesh) == {f"{mesh.api}-host1",
                                                              f"{mesh.api}-host3"},
               within=30, what="front knowing both api instances")
    process = subprocess.Popen(
        ["ip", "netns", "exec", front.netns, sys.executable, "-m", "tests.e2e.loadgen",
         "--port", str(OUTBOUND_PORT), "--service", mesh.api, "--rate", str(LOAD_RATE),
         "--max-requests", str(LOAD_RATE * LOAD_MAX_SECONDS),
         "--max-seconds", str(LOAD_MAX_SECONDS)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    result = LoadResult()
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "STARTED", process.stderr
        yield result
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    summary = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    assert summary, f"the load generator printed no summary: {err[-2000:]}"
    result.__dict__.update(summary)
    print(f"load: {result.ok} answered, {result.failed} failed in {result.seconds} s, "
          f"by backend {result.backends}")


def installed_versions(host: SshHost) -> dict[str, str]:
    """The distributions in the host's vmesh venv, by canonical name: their versions."""
    result = host.run(
        str(host.vmesh_root / "opt/vmesh/venv/bin/python"), "-c",
        "import json, re; from importlib import metadata; print(json.dumps("
        "{re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version"
        " for d in metadata.distributions()}))")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_host_gets_its_own_vmesh_of_the_asked_version(mesh: Mesh) -> None:
    pinned = read_constraints(CONSTRAINTS.read_text())
    for host in mesh.cluster.hosts:
        result = vmesh(host, "--version")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "vmesh 0.1.0"
        assert (host.vmesh_root / "etc/vmesh/mesh.toml").is_file()
        # the libraries the release was tested with, each at its pinned version
        installed = installed_versions(host)
        assert {name: installed.get(name) for name in pinned} == pinned, host.name


def test_the_ca_host_serves_certificates_from_its_own_anchor(mesh: Mesh) -> None:
    require_tool("curl")
    ca, other = mesh.hosts["host1"], mesh.hosts["host2"]
    assert vmesh(ca, "identity", "status", "--json").returncode == 0
    assert not (other.vmesh_root / "var/lib/vmesh/identity").exists()
    result = other.run(
        "curl", "-sS", "--cacert", str(ca.vmesh_root / "var/lib/vmesh/identity/bundle.pem"),
        "-o", "/dev/null", "-w", "%{http_code}", f"https://{ca.address}:8443/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.isdigit(), "no HTTP answer over TLS verified by the CA bundle"


def test_a_request_crosses_hosts_over_mtls_between_the_joined_services(mesh: Mesh) -> None:
    require_tool("curl")
    answers: list[tuple[str, str]] = []
    # the front proxy watches api from its first request on: the first may find no instance yet
    wait_until(lambda: answers.append(get_through_front(mesh)) or answers[-1][0] == "200",
               within=15, what=f"{mesh.api} answering through the front proxy")
    answer = json.loads(answers[-1][1])
    assert answer["name"] in {f"{mesh.api}@host1", f"{mesh.api}@host3"}
    assert answer["client_id"] == f"spiffe://vmesh.local/svc/{mesh.front}"


def test_a_second_site_run_changes_nothing_and_keeps_the_anchor(mesh: Mesh) -> None:
    anchor = mesh.hosts["host1"].vmesh_root / "var/lib/vmesh/identity/bundle.pem"
    before = anchor.read_bytes()
    second = mesh.playbook("site.yml")
    assert second.returncode == 0, second.output[-4000:]
    assert second.changed() == {name: 0 for name in mesh.hosts}, second.output[-4000:]
    assert anchor.read_bytes() == before


def test_a_changed_mesh_toml_reaches_the_running_proxies(mesh: Mesh) -> None:
    receiver = OtlpReceiver(mesh.cluster.gateway).start()  # the collector, off the hosts
    trace = secrets.token_hex(16)
    front = mesh.hosts["host2"]
    try:
        traced = mesh.playbook("site.yml", vmesh_tracing_otlp_endpoint=receiver.endpoint)
        assert traced.returncode == 0, traced.output[-4000:]
        assert traced.changed()["host2"] > 0

        def traced_request_answered() -> bool:
            answer = front.run(
                "curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
                "-H", f"Host: {mesh.api}", "-H", f"traceparent: 00-{trace}-00f067aa0ba902b7-01",
                f"http://127.0.0.1:{OUTBOUND_PORT}/hello")
            return answer.stdout == "200"

        # the new front proxy watches api from its first request on, as after the first run
        wait_until(traced_request_answered, within=15, what=f"{mesh.api} answering")
        wait_until(lambda: {s["resource"]["service.name"] for s in receiver.of_trace(trace)}
                   == {mesh.front, mesh.api}, within=30,
                   what="spans from front's proxy and the api proxy that answered")
    finally:
        restored = mesh.playbook("site.yml")  # the later tests start from the first config
        receiver.stop()
    assert restored.returncode == 0, restored.output[-4000:]
    # handed over again: the later tests' load needs front's proxy watching api, as before
    wait_until(lambda: get_through_front(mesh)[0] == "200", within=15,
               what=f"{mesh.api} answering through the front proxy again")


def ca_certificates(mesh: Mesh) -> list[dict]:
    status = vmesh(mesh.hosts["host1"], "identity", "status", "--json")
    assert status.returncode == 0, status.stderr
    return json.loads(status.stdout)["certificates"]


def users_of(host: SshHost, process: str) -> set[str]:
    """The users that the vmesh process `process` of `host` (`identity`, `svc-<service>`,
    `cert-helper-<name>`) and its children run as; empty when it does not run."""
    pidfile = host.vmesh_root / f"run/vmesh/{process}.pid"
    try:
        main = psutil.Process(int(pidfile.read_text()))
        return {p.username() for p in (main, *main.children(recursive=True))}
    except (FileNotFoundError, psutil.NoSuchProcess):
        return set()


def test_the_ca_and_the_services_run_as_the_vmesh_user(mesh: Mesh) -> None:
    ca, front, api = mesh.cluster.hosts
    assert users_of(ca, "identity") == {VMESH_USER}
    for host, service in ((ca, mesh.api), (front, mesh.front), (api, mesh.api)):
        assert users_of(host, f"svc-{service}") == {VMESH_USER}, host.name  # run, proxy, app


def test_site_runs_a_cert_helper_that_keeps_the_scrapers_leaf(mesh: Mesh) -> None:
    host = mesh.hosts["host2"]
    directory = host.vmesh_root / "var/lib/vmesh" / SCRAPER
    leaf, issuer = pki.load_certs((directory / "cert.pem").read_bytes())
    assert str(pki.identity_of(leaf)) == f"spiffe://vmesh.local/svc/{SCRAPER}"
    [active] = [c for c in ca_certificates(mesh) if c["role"] == "issuer" and c["active"]]
    assert pki.new_serial_hex(issuer) == active["serial"]
    key = (directory / "key.pem").stat()
    assert (key.st_mode & 0o777, key.st_uid) == (0o600, pwd.getpwnam(SCRAPER_USER).pw_uid)
    log = host.vmesh_root / f"var/log/vmesh/cert-helper-{SCRAPER}.log"
    assert users_of(host, f"cert-helper-{SCRAPER}") == {SCRAPER_USER}, log.read_text()[-2000:]


def test_rotating_certificates_under_load_fails_no_request_and_retires_the_old_issuer(
    mesh: Mesh,
) -> None:
    [old_issuer] = [c["serial"] for c in ca_certificates(mesh) if c["role"] == "issuer"]
    scraper_host = mesh.hosts["host2"]
    scraper = scraper_host.vmesh_root / "var/lib/vmesh" / SCRAPER

    with load_through_front(mesh) as load:
        run = mesh.playbook("rotate-certs.yml")

    assert run.returncode == 0, run.output[-4000:]
    assert load.failed == 0, load.failures
    assert load.ok > 0
    certificates = ca_certificates(mesh)
    [retired] = [c for c in certificates if c["role"] == "issuer" and c["retired"]]
    [active] = [c for c in certificates if c["role"] == "issuer" and c["active"]]
    assert retired["serial"] == old_issuer and active["serial"] != old_issuer
    [new_anchor] = [c["serial"] for c in certificates if c["role"] == "anchor"
                    and not c["retired"]]
    services = [(mesh.hosts[name], service)
                for name, service in (("host1", mesh.api), ("host2", mesh.front),
                                      ("host3", mesh.api))]
    for host, service in services:
        state = host.vmesh_root / "var/lib/vmesh" / service
        leaf, issuer = pki.load_certs((state / "cert.pem").read_bytes())
        leaf.verify_directly_issued_by(issuer)
        assert pki.new_serial_hex(issuer) == active["serial"], f"{service}@{host.name}"
        bundle = pki.load_certs((state / "bundle.pem").read_bytes())
        assert [pki.new_serial_hex(c) for c in bundle] == [new_anchor], f"{service}@{host.name}"
        loaded = admin(host, service, "/v1/certs")  # what the running proxy serves and trusts
        assert [c["serial"] for c in loaded["chain"]] == [
            pki.new_serial_hex(leaf), active["serial"]]
        assert [c["serial"] for c in loaded["bundle"]] == [new_anchor]

    # the scraper's leaf and bundle went through the same phases, its helper still runs, and
    # with them it reads host2's proxy's /metrics, verifying the proxy as Prometheus does
    assert users_of(scraper_host, f"cert-helper-{SCRAPER}") == {SCRAPER_USER}
    leaf, issuer = pki.load_certs((scraper / "cert.pem").read_bytes())
    assert str(pki.identity_of(leaf)) == f"spiffe://vmesh.local/svc/{SCRAPER}"
    assert pki.new_serial_hex(issuer) == active["serial"]
    bundle = pki.load_certs((scraper / "bundle.pem").read_bytes())
    assert [pki.new_serial_hex(c) for c in bundle] == [new_anchor]
    proxy_name = pki.proxy_dns_name("vmesh.local")
    scrape = scraper_host.run(
        "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
        "--cacert", str(scraper / "bundle.pem"), "--cert", str(scraper / "cert.pem"),
        "--key", str(scraper / "key.pem"),
        "--resolve", f"{proxy_name}:{ADMIN_PORT}:127.0.0.1",
        f"https://{proxy_name}:{ADMIN_PORT}/metrics")
    assert scrape.stdout == "200", scrape.stderr


def patched_proxy_that_never_starts(source: Path) -> None:
    cli = source / "proxy" / "cli.py"
    text = cli.read_text()
    broken = text.replace("    loaded = load_service(args.service)\n",
                          "    raise SystemExit('this build of the proxy is broken')\n", 1)
    assert broken != text
    cli.write_text(broken)


def versions(mesh: Mesh) -> dict[str, str]:
    return {name: vmesh(host, "--version").stdout.strip() for name, host in mesh.hosts.items()}


def test_a_rolling_upgrade_under_load_fails_no_request(mesh: Mesh) -> None:
    release_of(mesh.wheel, "0.2.0")

    with load_through_front(mesh) as load:
        run = mesh.playbook("upgrade.yml", vmesh_version="0.2.0")

    assert run.returncode == 0, run.output[-4000:]
    per_host = re.findall(r"vmesh rollout: (\S+) upgraded to 0\.2\.0 in ([\d.]+) s", run.output)
    print("rollout time per host: " + ", ".join(f"{host} {secs} s" for host, secs in per_host))
    assert sorted(host for host, _ in per_host) == ["host1", "host2", "host3"]
    assert load.failed == 0, load.failures
    assert load.ok > 0
    assert versions(mesh) == {"host1": "vmesh 0.2.0", "host2": "vmesh 0.2.0",
                              "host3": "vmesh 0.2.0"}
    for name, service in (("host1", mesh.api), ("host2", mesh.front), ("host3", mesh.api)):
        host = mesh.hosts[name]
        assert admin(host, service, "/v1/stats")["version"] == "0.2.0", name  # the proxy
        handover = json.loads((host.vmesh_root / f"run/vmesh/{service}.handover").read_text())
        assert handover["supervisor_version"] == "0.2.0", name  # and `vmesh run` itself
    wait_until(lambda: api_instances_known_to_front(mesh) == {f"{mesh.api}-host1",
                                                              f"{mesh.api}-host3"},
               within=15, what="front routing to both upgraded api instances")


def test_an_upgrade_to_the_running_version_leaves_healthy_hosts_alone(mesh: Mesh) -> None:
    again = mesh.playbook("upgrade.yml", vmesh_version="0.2.0")
    assert again.returncode == 0, again.output[-4000:]
    assert again.changed() == {"host1": 0, "host2": 0, "host3": 0}, again.output[-4000:]
    assert "upgraded to" not in again.output


def test_a_host_failing_its_health_check_stops_the_rollout_and_the_rest_keeps_serving(
    mesh: Mesh,
) -> None:
    release_of(mesh.wheel, "0.2.1", patch=patched_proxy_that_never_starts)

    with load_through_front(mesh) as load:
        run = mesh.playbook("upgrade.yml", vmesh_version="0.2.1",
                            vmesh_proxy_ready_timeout_s="5")

    assert run.returncode != 0
    stop = next((line for line in run.output.splitlines()
                 if "vmesh rollout to 0.2.1 stopped" in line), "")
    assert "stopped at host1: " in stop, run.output[-4000:]
    assert (f"the new proxy of {mesh.api} on host1 did not take over: the new proxy exited "
            "with 1 before it was ready; the old proxy goes on serving") in stop
    assert "this build of the proxy is broken" in stop  # the new proxy's own last words
    assert versions(mesh)["host3"] == "vmesh 0.2.0", "the rollout went on after host1"
    assert load.failed == 0, load.failures
    assert (load.backends or {}).get(f"{mesh.api}@host3", 0) > 0
    # host1's old proxy, out of discovery since the drain, went on serving its own app; the
    # failed handover gives it back to its peers (SIGTTIN), still on 0.2.0
    assert admin(mesh.hosts["host1"], mesh.api, "/v1/stats")["version"] == "0.2.0"
    wait_until(lambda: api_instances_known_to_front(mesh) == {f"{mesh.api}-host1",
                                                              f"{mesh.api}-host3"},
               within=30, what="front routing to host1's old proxy again")
    status, body = get_through_front(mesh)
    assert status == "200", body
    assert json.loads(body)["name"] in {f"{mesh.api}@host1", f"{mesh.api}@host3"}
