"""site.yml rolls a change that restarts services out one host at a time (its play's
`serial`: vmesh_rolling_batch, default 1), run by the real ansible-playbook on two hosts of
this machine (host1 the CA, both running `api` from the same vmesh_proxy_services item, as a
fleet's group_vars give it): a changed app command restarts host1's service, which is ready
again before host2's is stopped; a host1 whose restarted proxy does not become ready stops
the roll-out there, and host2 keeps its running service untouched."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.ansible_host import LocalHost, run_playbook
from tests.integration.supervised import admin_get

STOP = "vmesh : Stop the process for a restart - svc-api"
READY = "vmesh_proxy : Wait for the proxy to be ready - api"


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LocalHost]]:
    """host1 (the CA) and host2, each running `api` after a first site.yml run."""
    workdir = tmp_path_factory.mktemp("rolling")
    ca = LocalHost(workdir, "host1")
    hosts = [ca, LocalHost(workdir, "host2", ca=ca)]
    try:
        first = run_playbook(hosts)
        assert first.returncode == 0, first.output[-4000:]
        yield hosts
    finally:
        for host in reversed(hosts):
            host.stop()


def task_events(output: str) -> list[tuple[str, str, str]]:
    """(task, outcome, host) in the order ansible-playbook printed them."""
    task, events = "", []
    for line in output.splitlines():
        if header := re.match(r"TASK \[(.+)\] \*+$", line):
            task = header.group(1)
        elif outcome := re.match(r"(ok|changed|fatal|skipping): \[([^\]]+)\]", line):
            events.append((task, outcome.group(1), outcome.group(2)))
    return events


def supervisor_pid(host: LocalHost) -> int:
    return int((host.root / "run/vmesh/svc-api.pid").read_text())


def with_app_name(host: LocalHost, name: str) -> list[dict[str, object]]:
    """vmesh_proxy_services with api's app started under another name: a changed command,
    which restarts the service."""
    command = [name if arg == "api" else arg for arg in host.service["command"]]
    return [{**host.service, "command": command}]


def test_a_changed_app_command_restarts_host2_only_after_host1_is_ready_again(
    hosts: list[LocalHost],
) -> None:
    before = {host.name: supervisor_pid(host) for host in hosts}
    run = run_playbook(hosts, vmesh_proxy_services=with_app_name(hosts[0], "api-v2"))
    assert run.returncode == 0, run.output[-4000:]
    events = task_events(run.output)
    assert events.index((STOP, "changed", "host1")) < events.index((READY, "ok", "host1"))
    assert events.index((READY, "ok", "host1")) < events.index((STOP, "changed", "host2"))
    for host in hosts:
        assert supervisor_pid(host) != before[host.name], host.name
        assert admin_get(host.root, "api", "/ready").status_code == 200, host.name


def test_a_host_not_ready_after_its_restart_stops_the_roll_out_before_the_next(
    hosts: list[LocalHost],
) -> None:
    host1, host2 = hosts
    endpoints: Path = host1.root / "etc/vmesh/endpoints.toml"
    endpoints.unlink()  # a static-discovery proxy is not ready until it has read it
    host2_pid = supervisor_pid(host2)
    host2_argv = (host2.root / "run/vmesh/svc-api.argv").read_text()
    try:
        run = run_playbook(hosts, vmesh_proxy_ready_timeout_s=5,
                           vmesh_proxy_services=with_app_name(host1, "api-v3"))
    finally:
        endpoints.write_text("")
    assert run.returncode != 0
    assert "the proxy of api on host1 is not ready after 5 s" in " ".join(run.output.split()), (
        run.output[-4000:])
    assert [event for event in task_events(run.output) if event[2] == "host2"] == []
    assert supervisor_pid(host2) == host2_pid
    assert (host2.root / "run/vmesh/svc-api.argv").read_text() == host2_argv
    assert admin_get(host2.root, "api", "/ready").status_code == 200
