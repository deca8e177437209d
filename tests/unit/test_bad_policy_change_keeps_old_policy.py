"""Reloading: a valid change is taken (file watch, SIGHUP); an invalid one is refused and logged."""

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest

from proxy.route import RequestFacts
from proxy.traffic import TrafficPolicy
from tests.unit.policy_helpers import eventually
from vm_mesh.policy.files import PolicyInvalid
from vm_mesh.policy.store import PolicyStore

ROUTE = (
    "kind: HTTPRoute\nname: {name}\nservice: api\nrules:\n  - matches: [{{path: {{prefix: /}}}}]\n"
)


def write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def route_name(store: PolicyStore) -> str:
    return TrafficPolicy(store.current, "vmesh.local").service("api").plan(
        RequestFacts.build("GET", "/x")
    ).target.route


def test_initial_load_refuses_a_broken_policy(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("kind: Nope\n")
    with pytest.raises(PolicyInvalid):
        PolicyStore(tmp_path).load_initial()


def test_invalid_change_is_refused_with_the_check_report(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy_file = tmp_path / "a.yaml"
    write(policy_file, ROUTE.format(name="first"))
    store = PolicyStore(tmp_path)
    store.load_initial()
    write(policy_file, ROUTE.format(name="second") + "    timeout: {request: 2}\n")
    with caplog.at_level(logging.ERROR, logger="vmesh.policy"):
        assert not store.reload()
    assert route_name(store) == "first"
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == (
        f"{policy_file}:6: HTTPRoute second: rules[0].timeout.request: "
        "duration must be a string with a unit like 2s or 500ms, not 2"
    )
    assert "previous policy stays in force" in messages[-1]
    assert store.describe()["refused"] == [messages[0]]
    assert store.generation == 1


async def test_valid_change_is_picked_up_by_the_watcher(tmp_path: Path) -> None:
    policy_file = tmp_path / "a.yaml"
    write(policy_file, ROUTE.format(name="first"))
    store = PolicyStore(tmp_path)
    store.load_initial()
    seen: list[int] = []
    store.subscribe(lambda policy: seen.append(len(policy)))
    watcher = asyncio.create_task(store.watch(interval=0.05))
    try:
        write(policy_file, ROUTE.format(name="broken") + "  bad: [\n")
        await eventually(lambda: store.errors)
        assert route_name(store) == "first"
        write(policy_file, ROUTE.format(name="second"))
        await eventually(lambda: route_name(store) == "second")
        (tmp_path / "b.yaml").write_text("kind: Mirror\nservice: api\nto: shadow\npercent: 1\n")
        await eventually(lambda: len(store.current) == 2)
        assert seen == [1, 2]
        documents = store.describe()["documents"]
        assert [(d["kind"], Path(d["source"]["file"]).name) for d in documents] == [
            ("HTTPRoute", "a.yaml"),
            ("Mirror", "b.yaml"),
        ]
    finally:
        watcher.cancel()


async def test_sighup_reloads(tmp_path: Path) -> None:
    policy_file = tmp_path / "a.yaml"
    write(policy_file, ROUTE.format(name="first"))
    store = PolicyStore(tmp_path)
    store.load_initial()
    loop = asyncio.get_running_loop()
    store.install_sighup(loop)
    try:
        write(policy_file, ROUTE.format(name="second"))
        os.kill(os.getpid(), signal.SIGHUP)
        await eventually(lambda: store.generation == 2)
        assert route_name(store) == "second"
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


def test_reload_keeps_live_retry_budgets(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", ROUTE.format(name="first"))
    store = PolicyStore(tmp_path)
    traffic = TrafficPolicy(store.load_initial(), "vmesh.local")
    budget = traffic.service("api").budget
    budget.record_request()
    write(tmp_path / "a.yaml", ROUTE.format(name="second"))
    assert store.reload()
    reloaded = traffic.reloaded(store.current)
    assert reloaded.service("api").budget is budget
    write(tmp_path / "b.yaml", "kind: ServicePolicy\nservice: api\nretry_budget: {ratio: 0.5}\n")
    assert store.reload()
    changed = reloaded.reloaded(store.current).service("api").budget
    assert changed is not budget and changed.ratio == 0.5


def test_a_policy_file_whose_link_leads_nowhere_is_refused_not_skipped(tmp_path: Path) -> None:
    """A policy file that cannot be read keeps the policy in force, even when it is a symlink
    to a file that is gone (a deploy swapping targets): skipping it would drop its rules."""
    targets = tmp_path / "targets"
    targets.mkdir()
    write(targets / "api.yaml", ROUTE.format(name="first"))
    policy_dir = tmp_path / "policy.d"
    policy_dir.mkdir()
    (policy_dir / "api.yaml").symlink_to(targets / "api.yaml")
    store = PolicyStore(policy_dir)
    store.load_initial()
    assert route_name(store) == "first"
    (targets / "api.yaml").unlink()
    assert store.changed_on_disk()
    assert not store.reload()
    assert route_name(store) == "first"
    assert [e.code for e in store.errors] == ["policy.unreadable"]
    with pytest.raises(PolicyInvalid):
        PolicyStore(policy_dir).load_initial()
