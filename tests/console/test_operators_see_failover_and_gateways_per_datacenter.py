"""During a multi-site incident the console's endpoints view and `vmesh endpoints` show where a
service's traffic goes instead (the failover's destination, reason and since when), the
datacenter of every upstream and instance, and the mesh gateway an instance is reached through.

Real proxies in two sites (each its own fake Consul agent, federated as over the WAN, one CA):
dc1 reaches east through east's mesh gateway (`gateways = ["east"]`), and dc1's ServicePolicy
fails `api` over to `api.east`. dc1's instance of `api` leaves discovery, so the front proxy's
requests for `api` go to east, through the gateway.
"""

import json
import shlex
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.console.conftest import REPO, wait_for
from tests.console.test_cli_twins_print_columns_and_json import vmesh
from tests.console.test_console_in_a_real_terminal import Terminal, terminal  # noqa: F401
from tests.integration.mesh import ProxyProcess
from tests.integration.mesh import get_via as get
from tests.integration.processes import start_backend
from tests.integration.test_requests_cross_to_another_site_through_its_gateway import (  # noqa: F401
    TRUST_DOMAIN,
    Sites,
    sites,
)


@dataclass
class FailedOver:
    sites: Sites
    name: str  # the service `api<hex>`, in both sites
    local: ProxyProcess  # dc1's proxy of it, out of discovery
    front: ProxyProcess  # the dc1 proxy whose requests for it fail over

    def answered_by(self) -> str:
        answer = get(self.front, f"{self.name}.mesh")
        return answer.json()["name"] if answer.status_code == 200 else answer.text


@pytest.fixture
def failed_over(sites: Sites) -> Iterator[FailedOver]:  # noqa: F811
    name, _ = sites.start_east_api()
    policy = sites.home.root / "etc/vmesh/policy.d/failover.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(f"kind: ServicePolicy\nservice: {name}\nfailover: [{name}.east]\n")
    sites.backends.append(start_backend(f"{name}-dc1-app"))
    local = sites.home.start_proxy(name, sites.backends[-1].port, instance_id=f"{name}-dc1")
    front = sites.home.start_proxy("front", 1)
    found = FailedOver(sites, name, local, front)
    wait_for(lambda: found.answered_by() == f"{name}-dc1-app", 15, "dc1's instance found")
    local.proc.send_signal(signal.SIGUSR1)  # leaves discovery: dc1 lists no instance
    wait_for(lambda: found.answered_by() == f"{name}-east-app", 15,
             "the requests failing over to east, through its gateway")
    yield found


def rows_of(screen: str) -> dict[tuple[str, ...], list[str]]:
    """The endpoints table on `screen`, its cells by their first two."""
    return {tuple(cells[:2]): cells[2:] for cells in map(str.split, screen.splitlines())
            if len(cells) > 2}


def test_the_endpoints_view_shows_the_failover_datacenters_and_gateway(
    failed_over: FailedOver, terminal: Terminal  # noqa: F811
) -> None:
    name = failed_over.name
    env = f"VMESH_ROOT={shlex.quote(str(failed_over.sites.home.root))} " \
          f"PYTHONPATH={shlex.quote(str(REPO))}"
    terminal.start(f"cd {shlex.quote(str(REPO))} && env {env} TERM=xterm-256color "
                   f"{shlex.quote(sys.executable)} -m vm_mesh console", width=160, height=40)
    terminal.expect("vmesh > overview")
    terminal.keys(":")
    terminal.keys("endpoints", "Enter")
    terminal.expect("vmesh > endpoints")

    screen = terminal.expect(f"failover front: {name} -> {name}.east since ")
    assert f"no_endpoints: discovery lists no instance of {name}" in screen
    # a Consul query that failed meanwhile (a loaded machine) shows, rightly, as
    # last-known-good until the watch answers again: the view is read once it has
    wait_for(lambda: rows_of(terminal.screen()).get(("front", name), [])[:2]
             == ["local", "consul"], 20, f"front's {name} row sourced from consul")
    rows = rows_of(terminal.screen())
    # dc1's own api, failed over: where to and since when
    assert rows[("front", name)][:6] == ["local", "consul", "failover", "to", f"{name}.east",
                                         "since"]
    assert rows[("front", f"{name}.east")][:3] == ["east", "consul", "ok"]
    # the instance of api.east, under it, is east's gateway
    assert rows[("east-gw-1", "east")][1:] == ["closed", "gateway",
                                              f"{name}.east.{TRUST_DOMAIN}"]

    failed_over.local.proc.send_signal(signal.SIGTTIN)  # dc1's instance is back
    wait_for(lambda: failed_over.answered_by() == f"{name}-dc1-app", 15, "requests back in dc1")
    wait_for(lambda: "failover front:" not in terminal.screen(), 15,
             "the failover gone from the view")
    assert any(line.split()[:2] == [f"{name}-dc1", "local"]
               for line in terminal.screen().splitlines() if line.strip())
    terminal.keys("q")
    wait_for(lambda: not terminal.alive(), 10, "the console to exit")


def test_vmesh_endpoints_prints_the_failover_datacenters_and_gateway(
    failed_over: FailedOver, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = failed_over.name
    monkeypatch.setenv("VMESH_ROOT", str(failed_over.sites.home.root))
    result = vmesh("endpoints", "--json")
    assert result.returncode == 0, result.stderr
    rows = {(r["proxy"], r["upstream"]): r for r in map(json.loads, result.stdout.splitlines())}
    api = rows[("front", name)]
    assert (api["datacenter"], api["state"], api["instances"]) == ("local", "failover", [])
    assert {k: v for k, v in api["failover"].items() if k != "since"} == {
        "to": f"{name}.east", "reason": "no_endpoints",
        "detail": f"discovery lists no instance of {name}"}
    assert api["failover"]["since"] is not None
    east = rows[("front", f"{name}.east")]
    assert (east["datacenter"], east["state"], east["failover"]) == ("east", "ok", None)
    assert east["instances"] == [{
        "id": "east-gw-1", "addr": east["instances"][0]["addr"], "datacenter": "east",
        "breaker": "closed", "gateway": f"{name}.east.{TRUST_DOMAIN}"}]

    text = vmesh("endpoints").stdout.splitlines()
    assert text[0].split() == ["PROXY", "UPSTREAM", "DC", "INSTANCE", "ADDRESS", "STATE",
                               "DETAIL"]
    cells = {tuple(line.split()[:4]): line.split()[4:] for line in text[1:]}
    assert cells[("front", name, "local", "-")][:4] == ["consul", "failover", "to",
                                                        f"{name}.east"]
    assert cells[("front", f"{name}.east", "east", "east-gw-1")][1:] == [
        "closed", "gateway", f"{name}.east.{TRUST_DOMAIN}"]
    assert any(line.startswith(f"failover front: {name} -> {name}.east since ")
               and line.endswith(f"no_endpoints: discovery lists no instance of {name}")
               for line in text)
