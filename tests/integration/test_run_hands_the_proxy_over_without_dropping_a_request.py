"""`vmesh run` keeps its proxy's listening sockets: SIGUSR2 hands the proxy over to a new
process while the app keeps running and requests flow through it both ways (a caller's
POSTs too), none failing; a
new proxy that cannot start leaves the old one serving; a crashed proxy's successor answers
the connections that arrived while it was down; over mDNS, SIGUSR1 takes the proxy out of its
peers' view while it goes on serving, and its successor brings it back."""

import contextlib
import json
import secrets
import signal
import ssl
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration.mesh import Mesh, wait_until
from tests.integration.processes import start_backend
from tests.integration.supervised import Run, admin_get, load, requests_seen
from tests.support import free_port
from vm_mesh.host.launcher import systemd_is_pid1

pytestmark = pytest.mark.skipif(systemd_is_pid1(), reason="with systemd, vmesh run uses units")

BACKEND = str(Path(__file__).with_name("backend.py"))


def running(pid: int) -> bool:
    return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


class SupervisedFront:
    """`front` under `vmesh run --supervise` (its app: the test backend), calling `shop`
    through its outbound listener; `edge` calls `front` through front's inbound listener."""

    def __init__(self, root: Path) -> None:
        self.mesh = Mesh(root)
        self.root = root
        self.shop_app = start_backend("shop")
        self.mesh.start_proxy("shop", self.shop_app.port)
        self.app_port = app_port = free_port()
        self.mesh.configure("front", app_port, instance_id="front-1")
        self.mesh.issue("front")
        self.run = Run(self.mesh, "front", sys.executable, BACKEND, "--name", "front",
                       "--port", str(app_port), options=("--supervise",))
        wait_until(lambda: self.run.find(msg="proxy ready"), within=30, what="front ready")
        self.ready = self.run.find(msg="proxy ready")[0]
        self.mesh.add_instance("front", self.ready["inbound"], "front-1")
        self.edge = self.mesh.start_proxy("edge", 1)
        self.edge_port = int(self.edge.outbound.rsplit(":", 1)[1])

    def proxy_pids(self) -> list[int]:
        return [r["pid"] for r in self.run.find(msg="started", child="proxy")]

    def get(self, port: int, service: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{port}/hello", headers={"host": service},
                         timeout=10)

    def stop(self) -> None:
        self.run.kill()
        self.mesh.stop()
        self.shop_app.stop()


@pytest.fixture
def front(tmp_path: Path):
    deployed = SupervisedFront(tmp_path)
    yield deployed
    deployed.stop()


def test_sigusr2_hands_over_to_a_new_proxy_on_the_same_sockets_without_a_failed_request(
    front: SupervisedFront,
) -> None:
    [old_pid] = front.proxy_pids()
    [app_pid] = [r["pid"] for r in front.run.find(msg="started", child="app")]
    with load(front.ready["outbound"], "shop") as outbound, \
            load(front.edge_port, "front", method="POST") as inbound:
        wait_until(lambda: requests_seen(front.root, "front", "outbound") >= 50
                   and requests_seen(front.root, "front", "inbound") >= 50,
                   within=30, what="both loads flowing through front's proxy")
        front.run.process.send_signal(signal.SIGUSR2)
        wait_until(lambda: front.run.find(event="handover_done"), within=60,
                   what="the handover")
        # the new proxy (whose admin socket this is now) carries both loads
        wait_until(lambda: requests_seen(front.root, "front", "outbound") >= 50
                   and requests_seen(front.root, "front", "inbound") >= 50,
                   within=30, what="both loads flowing through the new proxy")

    assert outbound.failed == 0, outbound.failures
    assert inbound.failed == 0, inbound.failures
    assert outbound.ok > 100 and inbound.ok > 100
    [_, new_pid] = front.proxy_pids()
    [retired] = front.run.find(event="handover_retired")
    assert retired["old_pid"] == old_pid and retired["old_exit_code"] == 0
    # the supervisor became the installed code too: same PID, same children
    assert front.run.find(event="supervisor_reexec")
    [done] = front.run.find(event="handover_done")
    assert (done["pid"], done["app_pid"]) == (new_pid, app_pid)
    assert front.run.process.poll() is None
    assert not running(old_pid) and running(new_pid) and running(app_pid)
    status = json.loads((front.root / "run/vmesh/front.handover").read_text())
    assert (status["state"], status["pid"]) == ("done", new_pid)
    # the new proxy did not leave discovery, and the old one's drain did not take it out
    assert front.get(front.edge_port, "front").status_code == 200
    # the re-executed supervisor still stops its adopted children in order
    front.run.process.send_signal(signal.SIGTERM)
    assert front.run.wait(60) == 0
    stopped = [r for r in front.run.find(msg="stopped") if "child" in r]
    assert [(r["child"], r["pid"]) for r in stopped] == [
        ("proxy", old_pid), ("proxy", new_pid), ("app", app_pid)]
    assert stopped[1]["exit_code"] == 0  # the new proxy drained (the app dies of SIGTERM)
    [first, second] = front.run.find(msg="proxy ready")
    assert (second["inbound"], second["outbound"]) == (first["inbound"], first["outbound"])


def test_during_a_handover_probes_reach_the_new_proxy_and_a_stop_is_not_lost(
    front: SupervisedFront,
) -> None:
    """The old proxy drains a slow request after SIGUSR2. Meanwhile every probe of /ready on
    the shared admin port is answered by the new proxy (the draining one says 503: a health
    checker would take the instance out of service for the drain), and a SIGTERM (systemd
    stopping the service mid-upgrade) stops everything in order once the drain is done."""
    [old_pid] = front.proxy_pids()
    [app_pid] = [r["pid"] for r in front.run.find(msg="started", child="app")]
    httpx.post(f"http://127.0.0.1:{front.app_port}/_control", json={"delay": 8},
               timeout=10).raise_for_status()
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(front.get, front.edge_port, "front")
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{front.app_port}/_stats", timeout=10)
                   .json()["requests"] == 1, what="the slow request at the app")
        front.run.process.send_signal(signal.SIGUSR2)
        wait_until(lambda: front.run.find(msg="draining", leave_discovery=False), within=60,
                   what="the old proxy draining")
        probe = ssl.create_default_context(
            cafile=str(front.root / "var/lib/vmesh/front/bundle.pem"))
        probe.check_hostname = False  # the proxy's name is a SPIFFE ID
        statuses = [
            httpx.get(f"https://127.0.0.1:{front.ready['admin']}/ready", verify=probe,
                      timeout=10).status_code
            for _ in range(40)  # a new connection each: either proxy may accept it
        ]
        front.run.process.send_signal(signal.SIGTERM)
        assert not slow.done(), "the probes and the stop must come while the old proxy drains"
        assert slow.result(timeout=30).status_code == 200

    assert statuses == [200] * 40
    assert front.run.wait(60) == 0
    [retired] = front.run.find(event="handover_retired")
    assert (retired["old_pid"], retired["old_exit_code"]) == (old_pid, 0)
    [_, new_pid] = front.proxy_pids()
    stopped = [(r["child"], r["pid"], r["exit_code"])
               for r in front.run.find(msg="stopped") if "child" in r]
    assert stopped == [("proxy", old_pid, 0), ("proxy", new_pid, 0),
                       ("app", app_pid, -signal.SIGTERM)]


def test_a_new_proxy_that_cannot_start_leaves_the_old_one_serving(
    front: SupervisedFront,
) -> None:
    [old_pid] = front.proxy_pids()
    service_file = front.root / "etc/vmesh/services/front.toml"
    service_file.write_text(service_file.read_text() + "this is not toml\n")

    front.run.process.send_signal(signal.SIGUSR2)
    wait_until(lambda: front.run.find(event="handover_failed"), within=60, what="the verdict")

    [failed] = front.run.find(event="handover_failed")
    assert failed["reason"] == "the new proxy exited with 1 before it was ready"
    assert failed["pid"] == old_pid and running(old_pid)
    assert front.get(front.ready["outbound"], "shop").status_code == 200
    assert front.get(front.edge_port, "front").status_code == 200


def test_connections_made_while_a_crashed_proxy_restarts_are_answered_by_its_successor(
    front: SupervisedFront,
) -> None:
    [old_pid] = front.proxy_pids()
    psutil.Process(old_pid).kill()
    wait_until(lambda: not running(old_pid), what="the proxy gone")
    # the kept listening socket queues this connection until the restarted proxy accepts it
    answer = front.get(front.ready["outbound"], "shop")

    assert answer.status_code == 200
    assert front.run.find(msg="exited; restarting", child="proxy")
    [_, new_pid] = front.proxy_pids()
    assert running(new_pid)


@dataclass
class MdnsFront:
    """A supervised proxy announced over mDNS, and `status()` of a request to it from a peer."""

    root: Path
    name: str
    run: Run
    status: Callable[[], int]

    def drain(self) -> None:
        """An upgrade's first step: SIGUSR1, until the peer no longer finds the proxy."""
        self.run.process.send_signal(signal.SIGUSR1)
        wait_until(lambda: self.status() == 503, within=10, what="edge seeing it leave")

    def hand_over(self, outcome: str) -> None:
        """SIGUSR2, until the supervisor logs `outcome` (handover_done or handover_failed)."""
        self.run.process.send_signal(signal.SIGUSR2)
        wait_until(lambda: self.run.find(event=outcome), within=60, what=outcome)


@contextlib.contextmanager
def mdns_front(tmp_path: Path) -> Iterator[MdnsFront]:
    mesh = Mesh(tmp_path, discovery='backend = "mdns"\ninterfaces = ["127.0.0.1"]\n')
    name = f"front{secrets.token_hex(3)}"  # unique: other meshes may share this host's mDNS
    app_port = free_port()
    mesh.configure(name, app_port, instance_id=f"{name}-1")
    mesh.issue(name)
    run = Run(mesh, name, sys.executable, BACKEND, "--name", name, "--port", str(app_port),
              options=("--supervise",))
    try:
        wait_until(lambda: run.find(msg="proxy ready"), within=30, what=f"{name} ready")
        edge = mesh.start_proxy("edge", 1)

        def status() -> int:
            return httpx.get(f"http://{edge.outbound}/hello", headers={"host": name},
                             timeout=10).status_code

        wait_until(lambda: status() == 200, within=20, what="edge routing to it")
        yield MdnsFront(tmp_path, name, run, status)
    finally:
        run.kill()
        mesh.stop()


def test_over_mdns_a_proxy_leaves_discovery_on_sigusr1_and_its_successor_joins_it_again(
    tmp_path: Path,
) -> None:
    with mdns_front(tmp_path) as front:
        front.drain()
        [proxy_pid] = [r["pid"] for r in front.run.find(msg="started", child="proxy")]
        assert running(proxy_pid)  # out of discovery, still serving its app
        assert admin_ready(tmp_path, front.name) == (
            503, "left discovery (an upgrade hands this proxy's listeners over)")

        front.hand_over("handover_done")
        wait_until(lambda: front.status() == 200, within=10, what="edge routing to the successor")
        assert admin_ready(tmp_path, front.name) == (200, "ok")


def test_over_mdns_a_failed_handover_gives_the_old_proxy_back_to_its_peers(
    tmp_path: Path,
) -> None:
    with mdns_front(tmp_path) as front:
        front.drain()
        service_file = tmp_path / f"etc/vmesh/services/{front.name}.toml"
        service_file.write_text(service_file.read_text() + "this is not toml\n")

        front.hand_over("handover_failed")  # the new release cannot start
        wait_until(lambda: front.status() == 200, within=10, what="edge routing to it again")
        # the peer's view and /ready come back each in its own time (a CI run saw them apart)
        wait_until(lambda: admin_ready(tmp_path, front.name) == (200, "ok"), within=10,
                   what="/ready answering ok again")
        assert front.run.find(event="discovery_rejoined")


def admin_ready(root: Path, service: str) -> tuple[int, str]:
    answer = admin_get(root, service, "/ready")
    return answer.status_code, answer.json()["reason"]
