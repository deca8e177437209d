"""Consul discovery against a fake agent that keeps Consul's HTTP contract (tests/fake_consul.py).

The agent really probes each instance's `/ready` over HTTPS (the check the
backend registers); the watcher sees instances join when they answer, leave
when they stop answering or deregister, survives the index going backwards,
and keeps serving (marked stale) when the agent is down.
"""

import asyncio
import contextlib
import logging
import secrets
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from identity import pki
from tests.fake_consul import FakeConsul
from tests.unit.policy_helpers import eventually
from vm_mesh.discovery.base import Discovery, EndpointSet, Instance, NotDiscoverable
from vm_mesh.discovery.consul import ConsulDiscovery, ConsulSettings
from vm_mesh.discovery.lastknown import SOURCE, LastKnownGood, encode


class ReadyHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/ready" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _tls_context(directory: Path) -> ssl.SSLContext:
    """A server context with a leaf like ours: a SPIFFE URI SAN and no host name."""
    if not (directory / "cert.pem").exists():
        anchor = pki.create_anchor("vmesh.local")
        key = pki.generate_key()
        leaf = pki.issue_leaf(anchor, key.public_key(), spiffe_id="spiffe://vmesh.local/svc/api",
                              common_name="api", trust_domain="vmesh.local")
        pki.write_private(directory / "key.pem", pki.key_pem(key))
        pki.write_file(directory / "cert.pem", pki.cert_pem(leaf))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


class ReadyServer:
    """An instance's admin port on loopback (HTTPS `/ready`) that the test can close and
    reopen."""

    def __init__(self, directory: Path, port: int = 0) -> None:
        self.directory = directory
        self.http = ThreadingHTTPServer(("127.0.0.1", port), ReadyHandler)
        self.http.socket = _tls_context(directory).wrap_socket(self.http.socket, server_side=True)
        self.port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()

    def reopen(self) -> None:
        self.__init__(self.directory, self.port)  # type: ignore[misc]


class Latest:
    """Consumes a watch in the background; `sets` holds everything it yielded."""

    def __init__(self, discovery: Discovery, service: str) -> None:
        self.sets: list[EndpointSet] = []
        self.task = asyncio.create_task(self._run(discovery.watch(service)))

    async def _run(self, stream: AsyncIterator[EndpointSet]) -> None:
        async for endpoints in stream:
            self.sets.append(endpoints)

    @property
    def ids(self) -> set[str] | None:
        return {i.instance_id for i in self.sets[-1].instances} if self.sets else None

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
def ready(tmp_path: Path) -> Iterator[list[ReadyServer]]:
    servers = [ReadyServer(tmp_path), ReadyServer(tmp_path)]
    yield servers
    for server in servers:
        server.close()


def settings_for(agent: FakeConsul) -> ConsulSettings:
    return ConsulSettings(port=agent.port, wait="1s", check_interval="100ms",
                          deregister_after="1m", backoff_min_s=0.1, backoff_max_s=0.4)


def instances(service: str, ready: list[ReadyServer]) -> list[Instance]:
    return [Instance(service, f"{service}-{n}", "127.0.0.1", 40000 + n, admin_port=server.port,
                     zone=f"z{n}", version="1.0")
            for n, server in enumerate(ready, start=1)]


async def test_instances_join_when_ready_and_leave_when_not(
    agent: FakeConsul, ready: list[ReadyServer]
) -> None:
    service = f"api-{secrets.token_hex(3)}"
    discovery = ConsulDiscovery(settings_for(agent))
    first, second = instances(service, ready)
    watcher = Latest(discovery, service)
    try:
        await eventually(lambda: watcher.ids == set())  # unknown service: an empty answer
        await discovery.register(first)
        await discovery.register(second)
        await eventually(lambda: watcher.ids == {first.instance_id, second.instance_id})
        assert watcher.sets[-1].instances[0] == first  # meta carries zone, version, admin
        assert watcher.sets[-1].source == "consul" and not watcher.sets[-1].stale

        ready[1].close()  # the instance stops listening: the agent's check goes critical
        await eventually(lambda: watcher.ids == {first.instance_id})
        ready[1].reopen()
        await eventually(lambda: watcher.ids == {first.instance_id, second.instance_id})

        await discovery.deregister(first)  # drain
        await eventually(lambda: watcher.ids == {second.instance_id})
        assert any(p.startswith("/v1/health/service/") and "index=" in p and "passing" in p
                   for p in agent.requests)
    finally:
        await watcher.stop()
        await discovery.close()
    assert agent.services == {}  # close withdrew what was still registered


async def test_watch_recovers_when_the_index_goes_backwards(
    agent: FakeConsul, ready: list[ReadyServer]
) -> None:
    service = f"api-{secrets.token_hex(3)}"
    discovery = ConsulDiscovery(settings_for(agent))
    first, second = instances(service, ready)
    watcher = Latest(discovery, service)
    try:
        await discovery.register(first)
        await eventually(lambda: watcher.ids == {first.instance_id})
        churn = Instance(f"other-{service}", "other", "127.0.0.1", 1)
        for _ in range(10):  # move the index well ahead of what the restore goes back to
            await discovery.register(churn)
            await discovery.deregister(churn)
        high = agent.index
        await eventually(lambda: any(f"/{service}?index={high}&" in p for p in agent.requests))
        seen = len(agent.requests)
        agent.restore_snapshot(index=2)  # a restored cluster: every index is lower now
        await discovery.register(second)  # index 3, far below what the watcher last saw
        await eventually(lambda: watcher.ids == {first.instance_id, second.instance_id})
        # the query in flight when the index went back may have brought `second`; the one after
        # it starts again from 0 (no index), so it answers at once
        await eventually(lambda: any(
            p.startswith(f"/v1/health/service/{service}") and "index=" not in p
            for p in agent.requests[seen:]))
    finally:
        await watcher.stop()
        await discovery.close()


async def test_agent_down_keeps_the_last_set_marked_stale_across_restarts(
    agent: FakeConsul, ready: list[ReadyServer], tmp_path: Path
) -> None:
    service = f"api-{secrets.token_hex(3)}"
    first, _ = instances(service, ready)
    registrar = ConsulDiscovery(settings_for(agent))
    await registrar.register(first)
    proxy = LastKnownGood(ConsulDiscovery(settings_for(agent)), tmp_path, startup_grace_s=0.5)
    watcher = Latest(proxy, service)
    try:
        await eventually(lambda: watcher.ids == {first.instance_id})
        assert (tmp_path / f"{service}.json").exists()

        agent.stop()
        await eventually(lambda: watcher.sets[-1].stale)
        assert watcher.ids == {first.instance_id}  # still routing on what we knew
        await watcher.stop()

        # a restarted proxy while the agent is still down: the saved set, with its age
        restarted = Latest(LastKnownGood(ConsulDiscovery(settings_for(agent)), tmp_path,
                                         startup_grace_s=0.5), service)
        await eventually(lambda: restarted.sets)
        served = restarted.sets[-1]
        assert served.stale and served.source == SOURCE
        assert served.instances == (first,) and served.updated_at > 0

        agent.start()  # back on the same port, with its state
        await eventually(lambda: restarted.sets[-1].source == "consul", within=10)
        assert not restarted.sets[-1].stale and restarted.ids == {first.instance_id}
        await restarted.stop()
    finally:
        await watcher.stop()
        await registrar.close()


async def test_a_watch_of_answers_that_churn_asks_at_a_bounded_rate(agent: FakeConsul) -> None:
    """Consul's docs: a blocking loop over a result that changes fast turns into a busy loop
    (client CPU, load on the servers) unless it is rate-limited. The watch asks twice at once,
    then once per `query_interval_s` while every answer brings a change."""
    service = f"api-{secrets.token_hex(3)}"
    settings = replace(settings_for(agent), query_interval_s=0.5)
    discovery = ConsulDiscovery(settings)
    watcher = Latest(discovery, service)

    def asked() -> int:
        return sum(p.startswith(f"/v1/health/service/{service}?") for p in list(agent.requests))

    def churn() -> None:  # an instance whose port flips: every answer differs from the last
        for n in range(600):
            agent.register({"ID": "flapping", "Name": service, "Address": "127.0.0.1",
                            "Port": 42000 + n % 2})
            time.sleep(0.003)

    try:
        await eventually(lambda: watcher.sets)
        before, started = asked(), time.monotonic()
        await asyncio.to_thread(churn)
        queries, elapsed = asked() - before, time.monotonic() - started
        assert queries <= 2 + elapsed / settings.query_interval_s + 1
        # and it followed: the last registration (port 42001) is what the watch ends with
        await eventually(lambda: [i.port for i in watcher.sets[-1].instances] == [42001])
    finally:
        await watcher.stop()
        await discovery.close()


async def test_a_registration_the_agent_dropped_is_made_again(
    agent: FakeConsul, ready: list[ReadyServer]
) -> None:
    """The agent drops a registration whose check stayed critical for
    DeregisterCriticalServiceAfter (or loses it in a restart without its data dir); a proxy that
    is ready again must come back, not stay out of discovery until it is restarted."""
    service = f"api-{secrets.token_hex(3)}"
    settings = replace(settings_for(agent), deregister_after="300ms", resync_s=0.2)
    discovery = ConsulDiscovery(settings)
    first, _ = instances(service, ready)
    watcher = Latest(discovery, service)

    def registrations() -> int:
        return agent.requests.count("/v1/agent/service/register")

    try:
        await discovery.register(first)
        await eventually(lambda: watcher.ids == {first.instance_id})
        ready[0].close()  # not ready for longer than the deregister delay: the agent drops it
        await eventually(lambda: registrations() >= 2, within=10)  # and it is registered again
        ready[0].reopen()
        await eventually(lambda: watcher.ids == {first.instance_id}, within=10)
        assert first.instance_id in agent.services
    finally:
        await watcher.stop()
        await discovery.close()
    assert agent.services == {}  # withdrawn on close, not registered again after it


async def test_leaving_after_the_agent_dropped_the_registration_says_it_was_gone(
    agent: FakeConsul, ready: list[ReadyServer], caplog: pytest.LogCaptureFixture
) -> None:
    """A drain after the agent dropped the registration (reaped, or an agent restarted without
    its data) gets 404 from the agent: the log says the instance was already gone, not that
    this proxy deregistered it."""
    caplog.set_level(logging.INFO, logger="vmesh.discovery.consul")
    discovery = ConsulDiscovery(settings_for(agent))
    first, _ = instances(f"api-{secrets.token_hex(3)}", ready)
    try:
        await discovery.register(first)
        assert agent.deregister(first.instance_id)  # the agent drops it
        caplog.clear()
        await discovery.deregister(first)
    finally:
        await discovery.close()
    said = [(r.getMessage(), getattr(r, "event", None)) for r in caplog.records
            if getattr(r, "instance", None) == first.instance_id]
    assert said == [("not deregistered from consul: the agent no longer had it",
                     "discovery_consul_already_gone")]


async def test_registering_while_the_agent_is_down_completes_when_it_returns(
    agent: FakeConsul, ready: list[ReadyServer]
) -> None:
    service = f"api-{secrets.token_hex(3)}"
    first, _ = instances(service, ready)
    discovery = ConsulDiscovery(settings_for(agent))
    agent.stop()
    try:
        await discovery.register(first)  # does not raise: the proxy must still come up
        assert first.instance_id not in agent.services
        agent.start()
        await eventually(lambda: first.instance_id in agent.services, within=10)
    finally:
        await discovery.close()
    assert agent.services == {}


async def test_foreign_instances_are_logged_once_while_they_stay_and_then_forgotten(
    agent: FakeConsul, caplog: pytest.LogCaptureFixture
) -> None:
    """An instance of another trust domain is logged when it appears, not at every answer, and
    is forgotten when it leaves: what the watch remembers is bounded by one answer, however
    many foreign instances come and go (it logs one again if it comes back)."""
    caplog.set_level(logging.INFO, logger="vmesh.discovery.consul")
    service = f"api-{secrets.token_hex(3)}"
    discovery = ConsulDiscovery(settings_for(agent), trust_domain="vmesh.local")

    def foreign(number: int) -> None:
        agent.register({"ID": f"theirs-{number}", "Name": service, "Address": "127.0.0.1",
                        "Port": 42000 + number, "Meta": {"td": "elsewhere.test"}})

    def logged() -> list[str]:
        return [r.instance for r in caplog.records  # type: ignore[attr-defined]
                if getattr(r, "event", None) == "discovery_consul_foreign"]

    watcher = Latest(discovery, service)
    try:
        foreign(1)
        foreign(2)
        await eventually(lambda: sorted(logged()) == ["theirs-1", "theirs-2"])
        agent.deregister("theirs-1")
        foreign(3)  # answers go on; theirs-2 stays in every one of them
        await eventually(lambda: "theirs-3" in logged())
        foreign(1)  # back after it left: it was forgotten, so it is logged again
        await eventually(lambda: logged().count("theirs-1") == 2)
        assert logged().count("theirs-2") == 1
        assert watcher.ids == set()  # none of them is routed to
    finally:
        await watcher.stop()
        await discovery.close()


async def test_entries_with_meta_out_of_range_are_left_out_and_logged_once(
    agent: FakeConsul, caplog: pytest.LogCaptureFixture
) -> None:
    """Whoever may register in Consul writes the meta: an entry whose `weight` or `admin` is out
    of range announces no instance; it is left out, and logged once while it stays so."""
    caplog.set_level(logging.INFO, logger="vmesh.discovery.consul")
    service = f"api-{secrets.token_hex(3)}"
    discovery = ConsulDiscovery(settings_for(agent), trust_domain="vmesh.local")

    def register(instance_id: str, port: int, **meta: str) -> None:
        agent.register({"ID": instance_id, "Name": service, "Address": "127.0.0.1",
                        "Port": port, "Meta": {"td": "vmesh.local", "id": instance_id, **meta}})

    def rejected() -> list[tuple[str, str, str]]:
        return [(r.instance, r.reason, r.detail)  # type: ignore[attr-defined]
                for r in caplog.records if getattr(r, "event", None) == "discovery_consul_rejected"]

    watcher = Latest(discovery, service)
    try:
        register("negative", 42001, weight="-5")
        register("bad-admin", 42002, admin="70000")
        register("good", 42003, weight="10")
        await eventually(lambda: watcher.ids == {"good"})
        register("later", 42004)  # answers go on; the bad entries stay in every one of them
        await eventually(lambda: watcher.ids == {"good", "later"})
        assert sorted(rejected()) == [
            ("bad-admin", "discovery.bad_meta", "admin 70000 is not a port"),
            ("negative", "discovery.bad_meta", "weight '-5' is not a number"),
        ]
    finally:
        await watcher.stop()
        await discovery.close()


async def test_a_service_of_another_datacenter_is_watched_through_the_local_agent(
    agent: FakeConsul, east: FakeConsul, ready: list[ReadyServer], tmp_path: Path
) -> None:
    service = f"api-{secrets.token_hex(3)}"
    here, there = instances(service, ready)
    registrar = ConsulDiscovery(settings_for(east), trust_domain="vmesh.local")
    await registrar.register(there)  # with east's agent: an instance of datacenter east
    local = ConsulDiscovery(settings_for(agent), trust_domain="vmesh.local")
    await local.register(here)
    discovery = LastKnownGood(ConsulDiscovery(settings_for(agent), trust_domain="vmesh.local"),
                              tmp_path, startup_grace_s=0.5)
    remote, own = Latest(discovery, f"{service}.east"), Latest(discovery, service)
    try:
        await eventually(lambda: remote.ids == {there.instance_id}, within=10)
        await eventually(lambda: own.ids == {here.instance_id}, within=10)
        assert remote.sets[-1].service == f"{service}.east"
        assert (tmp_path / f"{service}.east.json").exists()

        east.stop()  # east's servers unreachable: an outage, the last set is kept, marked stale
        await eventually(lambda: remote.sets[-1].stale, within=10)
        assert remote.ids == {there.instance_id}
    finally:
        await remote.stop()
        await own.stop()
        await local.close()
    await registrar.close()  # east's agent is gone: logged, the check would remove it


async def test_a_datacenter_not_known_or_not_allowed_is_refused_without_a_watch(
    agent: FakeConsul, east: FakeConsul, tmp_path: Path
) -> None:
    unknown = LastKnownGood(ConsulDiscovery(settings_for(agent)), tmp_path, startup_grace_s=5)
    (tmp_path / "api.west.json").write_bytes(encode(EndpointSet(
        "api.west", (Instance("api", "api-west-1", "127.0.0.1", 1),), "consul", 1.0)))
    with pytest.raises(NotDiscoverable) as refused:  # at once, saved set or not
        async with asyncio.timeout(2):
            await anext(unknown.watch("api.west"))
    assert refused.value.reason == "discovery.unknown_datacenter"
    assert agent.requests == ["/v1/catalog/datacenters"]  # never a query for its instances

    allowed = replace(settings_for(agent), datacenters=("west",))
    with pytest.raises(NotDiscoverable) as not_allowed:
        await anext(ConsulDiscovery(allowed).watch("api.east"))
    assert not_allowed.value.reason == "discovery.datacenter_not_allowed"
    assert agent.requests == ["/v1/catalog/datacenters"]  # the agent was not even asked
