"""Over real mDNS on loopback: a watch lists only its own trust domain's instances (two meshes,
or two demos, on one LAN stay apart), its first set waits for the service's instances
however many other services resolve first, and a backend that closes says all its goodbyes."""

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from zeroconf import DNSIncoming

from tests.unit.policy_helpers import eventually
from vm_mesh.discovery.base import EndpointSet, Instance
from vm_mesh.discovery.lastknown import LastKnownGood
from vm_mesh.discovery.mdns import MdnsDiscovery

LOOPBACK = ["127.0.0.1"]


@pytest.fixture
async def discoveries() -> AsyncIterator[list[MdnsDiscovery]]:
    """mDNS backends a test opens; every one is closed at the end (goodbyes sent)."""
    opened: list[MdnsDiscovery] = []
    yield opened
    for discovery in opened:
        await discovery.close()


def ports(view: EndpointSet) -> set[int]:
    return {instance.port for instance in view.instances}


async def test_watch_leaves_out_instances_of_another_trust_domain(
    discoveries: list[MdnsDiscovery], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vmesh.discovery.mdns")
    service = f"web{secrets.token_hex(3)}"  # unique: other meshes may share this host's mDNS
    ours, theirs, older, watcher = (
        MdnsDiscovery(LOOPBACK, trust_domain="alpha.test"),
        MdnsDiscovery(LOOPBACK, trust_domain="beta.test"),
        MdnsDiscovery(LOOPBACK),  # announces no trust domain, as vmesh before `td` did
        MdnsDiscovery(LOOPBACK, trust_domain="alpha.test"),
    )
    discoveries += [ours, theirs, older, watcher]
    # the other mesh uses the same service and instance names, as a second demo does
    await ours.register(Instance(service, f"{service}-1", "127.0.0.1", 41001))
    await theirs.register(Instance(service, f"{service}-1", "127.0.0.1", 42002))
    await older.register(Instance(service, f"{service}-old", "127.0.0.1", 43003))

    views = watcher.watch(service)
    try:
        async with asyncio.timeout(30):
            async for view in views:
                assert 42002 not in ports(view), view
                if ports(view) == {41001, 43003}:
                    break
    finally:
        await views.aclose()

    def foreign_of_this_test() -> list[logging.LogRecord]:
        # other meshes on this host's mDNS (another test's, a demo) are ignored and logged too
        return [r for r in caplog.records if getattr(r, "event", None) == "discovery_mdns_foreign"
                and getattr(r, "record", "").startswith(f"{service}-")]

    await eventually(lambda: bool(foreign_of_this_test()), within=15)
    [foreign] = foreign_of_this_test()
    assert foreign.trust_domain == "beta.test"
    assert ports(watcher.current(service)) == {41001, 43003}


async def test_first_set_waits_for_the_service_while_others_resolve(
    discoveries: list[MdnsDiscovery],
) -> None:
    tag = secrets.token_hex(3)
    service, other = f"store{tag}", f"web{tag}"
    announcer = MdnsDiscovery(LOOPBACK, trust_domain="alpha.test")
    watcher = MdnsDiscovery(LOOPBACK, trust_domain="alpha.test", first_browse_s=20)
    discoveries += [announcer, watcher]
    await announcer.register(Instance(other, f"{other}-1", "127.0.0.1", 41001))

    views, others = watcher.watch(service), watcher.watch(other)
    try:
        first = asyncio.ensure_future(anext(views))
        async with asyncio.timeout(20):  # the other service resolved: the watcher saw a change
            assert ports(await anext(others)) == {41001}
        # ... which must not end the wait for the first `store` set
        await announcer.register(Instance(service, f"{service}-1", "127.0.0.1", 42002))
        async with asyncio.timeout(20):
            assert ports(await first) == {42002}
    finally:
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await views.aclose()
        await others.aclose()


class _Goodbyes:
    """Counts the mDNS packets on loopback that withdraw records (TTL 0) of one name."""

    def __init__(self, name: str) -> None:
        self.name = name.lower()
        self.packets = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # zeroconf's own do too
        self.sock.bind(("", 5353))
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                             socket.inet_aton("224.0.0.251") + socket.inet_aton("127.0.0.1"))
        self.sock.setblocking(False)

    def count(self) -> int:
        """Read what arrived so far; the number of goodbye packets of the name."""
        with contextlib.suppress(BlockingIOError):
            while True:
                packet = DNSIncoming(self.sock.recv(9000))
                if any(record.ttl == 0 and self.name in record.name.lower()
                       for record in packet.answers()):
                    self.packets += 1
        return self.packets

    def close(self) -> None:
        self.sock.close()


async def test_a_closing_backend_sends_all_its_goodbyes_before_its_sockets_close() -> None:
    """Three goodbye packets, as zeroconf sends them, so that one lost on the way does not
    leave peers routing to a stopped proxy until the records expire."""
    service = f"web{secrets.token_hex(3)}"
    goodbyes = _Goodbyes(f"{service}-1")
    try:
        ours = MdnsDiscovery(LOOPBACK, trust_domain="alpha.test")
        await ours.register(Instance(service, f"{service}-1", "127.0.0.1", 41001))
        await ours.close()  # withdraws, then closes its sockets
        await eventually(lambda: goodbyes.count() >= 3, within=5)
        assert goodbyes.count() == 3
    finally:
        goodbyes.close()


async def test_a_first_browse_that_hears_nothing_keeps_the_saved_set(
    discoveries: list[MdnsDiscovery], tmp_path: Path
) -> None:
    """A proxy restarted before multicast works hears nothing: that is no answer, so the
    instances it saved are served (stale) and stay saved."""
    service = f"api{secrets.token_hex(3)}"  # nobody announces it
    saved = EndpointSet(service, (Instance(service, f"{service}-1", "127.0.0.1", 41001),),
                        source="mdns", updated_at=1_000.0)
    watcher = MdnsDiscovery(LOOPBACK, trust_domain="alpha.test", first_browse_s=0.2)
    discoveries.append(watcher)
    lkg = LastKnownGood(watcher, tmp_path, startup_grace_s=5.0)
    lkg.save(saved)
    views = lkg.watch(service)
    first = await anext(views)
    await views.aclose()
    assert (first.source, first.stale, first.instances) == ("last-known-good", True,
                                                            saved.instances)
    assert lkg.load(service).instances == saved.instances


async def test_foreign_instances_are_logged_once_while_they_stay_and_then_forgotten(
    discoveries: list[MdnsDiscovery], caplog: pytest.LogCaptureFixture
) -> None:
    """An instance of another trust domain is logged when it appears, not at every
    announcement, and is forgotten when it says goodbye: what the watcher remembers is bounded
    by what its browse holds now, however many foreign instances come and go (it logs one
    again if it comes back)."""
    caplog.set_level(logging.INFO, logger="vmesh.discovery.mdns")
    service = f"api{secrets.token_hex(3)}"
    theirs, watcher = (MdnsDiscovery(LOOPBACK, trust_domain="beta.test"),
                       MdnsDiscovery(LOOPBACK, trust_domain="alpha.test"))
    discoveries += [theirs, watcher]

    def foreign(number: int) -> Instance:
        return Instance(service, f"{service}-theirs-{number}", "127.0.0.1", 42000 + number)

    def logged() -> list[str]:  # the instance names logged, of this test's service only
        return [r.record.split(".")[0] for r in caplog.records  # type: ignore[attr-defined]
                if getattr(r, "event", None) == "discovery_mdns_foreign"
                and getattr(r, "record", "").startswith(f"{service}-")]

    views = watcher.watch(service)
    first = asyncio.ensure_future(anext(views))  # browsing from now on
    try:
        await theirs.register(foreign(1))
        await theirs.register(foreign(2))
        await eventually(lambda: sorted(logged()) == [foreign(1).instance_id,
                                                      foreign(2).instance_id], within=15)
        await theirs.deregister(foreign(1))  # its goodbye is out
        await theirs.register(foreign(3))  # announced after that goodbye: heard after it
        await eventually(lambda: foreign(3).instance_id in logged(), within=15)
        await theirs.register(foreign(1))  # back after it left: forgotten, so logged again
        await eventually(lambda: logged().count(foreign(1).instance_id) == 2, within=15)
        assert logged().count(foreign(2).instance_id) == 1
        assert watcher.current(service).instances == ()  # none of them is routed to
    finally:
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await first
        await views.aclose()
