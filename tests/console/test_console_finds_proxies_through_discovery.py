"""`vmesh console` finds real proxies through discovery and reads them over mTLS.

The proxies announce themselves over mDNS on loopback, or register with a
Consul agent (tests/fake_consul.py); the console lists them from there and
reaches each one's admin API at the registered `admin` port with the operator
certificate of `vmesh identity operator`. Other meshes may share this host's
mDNS, so names carry a random suffix and assertions look at ours only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from textual.widgets import DataTable

from console.app import ConsoleApp
from console.discovered import ConsulAdmins, MdnsAdmins, discovery_providers, host_discovery
from console.sources import Sources, default_sources
from tests.console.pilot import table_rows, until
from tests.console.test_cli_twins_print_columns_and_json import vmesh
from tests.fake_consul import FakeConsul
from tests.integration.mesh import TRUST_DOMAIN, Mesh, ProxyProcess
from tests.integration.processes import Process, start_backend
from tests.integration.prometheus import documented_config, query_until, running_prometheus
from tests.support import free_port
from vm_mesh import paths
from vm_mesh.config import Discovery
from vm_mesh.discovery.base import Discovery as Backend
from vm_mesh.discovery.base import Instance

MDNS = 'backend = "mdns"\ninterfaces = ["127.0.0.1"]'  # mesh.toml's [discovery] table


@dataclass
class TwoProxies:
    """`web<suffix>` (in front of a backend) and `front<suffix>` that calls it."""

    mesh: Mesh
    web: ProxyProcess
    front: ProxyProcess
    suffix: str

    @property
    def names(self) -> dict[str, str]:
        """Instance id -> admin address, as discovery announces them."""
        return {f"web{self.suffix}-1": f"127.0.0.1:{self.web.ports['admin']}",
                f"front{self.suffix}-2": f"127.0.0.1:{self.front.ports['admin']}"}


@contextlib.contextmanager
def two_proxies(root, discovery: str) -> Iterator[TwoProxies]:
    mesh = Mesh(root, discovery)
    suffix = secrets.token_hex(3)
    backend: Process | None = None
    try:
        backend = start_backend(f"web{suffix}")
        web = mesh.start_proxy(f"web{suffix}", backend.port)
        front = mesh.start_proxy(f"front{suffix}", 1)
        assert vmesh("identity", "operator", "ann").returncode == 0
        yield TwoProxies(mesh, web, front, suffix)
    finally:
        mesh.stop()
        if backend is not None:
            backend.stop()


@pytest.fixture
def over_mdns(vmesh_root) -> Iterator[TwoProxies]:
    with two_proxies(vmesh_root, MDNS) as proxies:
        yield proxies


@pytest.fixture
def over_consul(vmesh_root, agent: FakeConsul) -> Iterator[TwoProxies]:
    table = (f'backend = "consul"\nconsul_url = "http://127.0.0.1:{agent.port}"\n'
             'consul_wait = "1s"\nconsul_check_interval = "100ms"')
    with two_proxies(vmesh_root, table) as proxies:
        yield proxies


@contextlib.contextmanager
def requests_through(front: ProxyProcess, service: str) -> Iterator[None]:
    """Requests from front's app to `service` until the block ends (at most 2,000, 60 s)."""
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=f"http://{front.outbound}", timeout=5) as client:
            for _ in range(2_000):
                if stop.wait(0.05):
                    return
                with contextlib.suppress(httpx.HTTPError):
                    client.get("/hello", headers={"host": f"{service}.mesh"})

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def overview(console: ConsoleApp) -> dict[str, list[str]]:
    """NAME -> the overview row, for every service and instance shown."""
    return {row[0].strip(): row for row in table_rows(console.view.query_one(DataTable))}


def ours_ready(console: ConsoleApp, names: dict[str, str]) -> bool:
    rows = overview(console)
    return all(name in rows and rows[name][1] == "ready" for name in names)


async def test_proxies_announced_over_mdns_are_read_over_mtls(over_mdns: TwoProxies) -> None:
    names = over_mdns.names
    console = ConsoleApp(Sources([MdnsAdmins(["127.0.0.1"])]))  # no local sockets
    async with console.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: ours_ready(console, names), "both proxies ready over mTLS",
                    deadline_s=20)
        rows = overview(console)
        assert {name: rows[name][8] for name in names} == names  # ADDRESS: the admin port
        web = f"web{over_mdns.suffix}-1"
        with requests_through(over_mdns.front, f"web{over_mdns.suffix}"):
            # tap is for operators only: events prove the operator certificate was used
            await until(pilot, lambda: any(e.proxy == web for e in console.data.tap.visible(50)),
                        "tap events of web over mTLS", deadline_s=20)
        event = next(e for e in console.data.tap.visible(50) if e.proxy == web)
        assert (event.direction, event.tls) == ("inbound", True)


async def test_a_local_proxy_found_over_mdns_too_is_read_once_over_its_socket(
        over_mdns: TwoProxies) -> None:
    sources = default_sources(discovery=discovery_providers(host_discovery()))
    (mdns,) = [p for p in sources.providers if isinstance(p, MdnsAdmins)]  # from service files
    console = ConsoleApp(sources)
    ids = set(over_mdns.names)
    async with console.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: ids <= {s.instance for s in sources.answers.get(mdns.label, ())},
                    "mDNS to list both proxies", deadline_s=20)
        await pilot.pause(0.1)
        ours = {s.name: s for s in console.known.values() if s.instance in ids}
        assert {(name, s.kind) for name, s in ours.items()} == {
            (f"web{over_mdns.suffix}", "unix"), (f"front{over_mdns.suffix}", "unix")}
        await until(pilot, lambda: ours_ready(console, ours), "both ready over their sockets")


async def test_consul_catalog_is_followed_and_a_dead_agent_is_shown_while_proxies_update(
        over_consul: TwoProxies, agent: FakeConsul) -> None:
    names = over_consul.names
    # nobody listens there: the identity service is down
    identity_url = f"https://127.0.0.1:{free_port()}"
    mesh_toml = paths.mesh_config()
    mesh_toml.write_text(f'identity_url = "{identity_url}"\n' + mesh_toml.read_text())
    consul = ConsulAdmins(Discovery(backend="consul", consul_url=f"http://127.0.0.1:{agent.port}"))
    console = ConsoleApp(Sources([consul]))
    async with console.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: ours_ready(console, names), "both proxies ready over mTLS",
                    deadline_s=20)
        assert {name: overview(console)[name][8] for name in names} == names

        agent.stop()
        problem = f"{consul.label}: ConnectionError: agent at 127.0.0.1:{agent.port}: " \
                  "connection refused [discovery.source_unreachable]"
        await until(pilot, lambda: problem in str(console.view.query_one("#problems").render()),
                    "the dead agent shown", deadline_s=20)
        assert "discovery: 1 failing" in str(console.query_one("#crumbs").render())
        seen = {name: console.data.statuses[name].last_ok for name in names}
        await until(pilot, lambda: all(console.data.statuses[n].last_ok > seen[n] for n in names),
                    "the proxies to keep updating")
        assert ours_ready(console, names)

        console.run_checks()  # the periodic run may predate the agent's death
        await pilot.press("8")

        def failed() -> set[tuple[str, str]]:
            return {(r[1], r[2]) for r in table_rows(console.view.query_one(DataTable))
                    if r[0] == "fail" and r[1] in ("admin", "discovery", "identity")}

        await until(pilot, lambda: ("discovery", consul.label) in failed(),
                    "the checks after the agent died")
        assert failed() == {("discovery", consul.label), ("identity", identity_url)}


def test_cli_twins_use_the_discovery_of_this_hosts_service_files(over_mdns: TwoProxies) -> None:
    stat = vmesh("stat", "--no-local", "--json")
    assert stat.returncode == 0, stat.stderr
    services = {json.loads(line)["name"] for line in stat.stdout.splitlines()}
    assert {f"web{over_mdns.suffix}", f"front{over_mdns.suffix}"} <= services


def test_prometheus_scrapes_every_proxy_that_vmesh_targets_lists(over_mdns: TwoProxies,
                                                                  tmp_path: Path) -> None:
    targets = tmp_path / "targets.json"
    listed = vmesh("targets", "--no-host-discovery", "--mdns-interface", "127.0.0.1",
                   "--out", str(targets))
    assert listed.returncode == 0, listed.stderr
    groups = {g["labels"]["vmesh_instance"]: g for g in json.loads(targets.read_text())}
    names = over_mdns.names
    assert {name: groups[name]["targets"] for name in names} == {
        name: [address] for name, address in names.items()}
    assert {groups[name]["labels"]["vmesh_discovery"] for name in names} == {"mdns"}

    # the documented config; for cert-helper's certificate the operator one the fixture made
    # (any mesh identity reads /metrics)
    config_file = tmp_path / "prometheus.yml"
    documented_config(config_file, paths.state_dir("operator"), targets)
    with running_prometheus(config_file, tmp_path / "tsdb") as url:
        up = query_until(url, f'up{{vmesh_instance=~".*{over_mdns.suffix}.*"}}',
                         lambda result: len(result) == 2
                         and all(r["value"][1] == "1" for r in result))
    assert {r["metric"]["vmesh_instance"]: r["metric"]["instance"] for r in up} == names


def test_check_fails_naming_an_unreachable_consul_agent(vmesh_root) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    result = vmesh("check", "--no-local", "--consul", url)
    assert result.returncode == 1
    line = next(x for x in result.stdout.splitlines() if x.startswith("[FAIL] discovery"))
    assert f"consul {url}: cannot list proxies: ConnectionError: agent at" in line
    assert "connection refused (hint: proxies keep routing on their last known good" in line
    bad = vmesh("stat", "--consul", "127.0.0.1:8500")  # no scheme
    assert bad.returncode != 0 and bad.stderr.startswith("vmesh: --consul: ")
    assert len(bad.stderr.splitlines()) == 1


async def _stat_lists_only_our_mesh(mate: Backend, other_mesh: Backend, suffix: str) -> None:
    """`mate` (of this mesh) and `other_mesh` (of another trust domain) each register an
    instance whose admin port nothing answers (it would be listed as unreachable if listed):
    `vmesh stat` lists ours and leaves the other mesh's out."""
    try:
        await mate.register(Instance(f"mate{suffix}", f"mate{suffix}-1", "127.0.0.1", 1,
                                     admin_port=9))
        await other_mesh.register(Instance(f"alien{suffix}", f"alien{suffix}-1", "127.0.0.1", 1,
                                           admin_port=9))
        stat = await asyncio.to_thread(vmesh, "stat", "--no-local", "--json")
    finally:
        await mate.close()
        await other_mesh.close()
    seen = stat.stdout + stat.stderr
    assert f"alien{suffix}" not in seen, seen
    assert f"mate{suffix}-1" in seen, seen
    assert f"web{suffix}" in seen


async def test_instances_of_another_trust_domain_on_the_lan_are_not_listed(
    over_mdns: TwoProxies,
) -> None:
    from vm_mesh.discovery.mdns import MdnsDiscovery

    await _stat_lists_only_our_mesh(MdnsDiscovery(["127.0.0.1"], trust_domain=TRUST_DOMAIN),
                                    MdnsDiscovery(["127.0.0.1"], trust_domain="elsewhere.test"),
                                    over_mdns.suffix)


async def test_instances_of_another_mesh_in_the_same_consul_are_not_listed(
    over_consul: TwoProxies, agent: FakeConsul,
) -> None:
    from vm_mesh.discovery.consul import ConsulDiscovery, ConsulSettings

    settings = ConsulSettings(port=agent.port)
    await _stat_lists_only_our_mesh(ConsulDiscovery(settings, trust_domain=TRUST_DOMAIN),
                                    ConsulDiscovery(settings, trust_domain="elsewhere.test"),
                                    over_consul.suffix)
