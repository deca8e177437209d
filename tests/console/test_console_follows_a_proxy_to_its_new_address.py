"""A proxy that discovery lists at a new admin address is followed there and kept polled."""

from __future__ import annotations

from pathlib import Path

from console.app import ConsoleApp
from console.discovered import StaticFileAdmins
from console.sources import Sources
from tests.console.pilot import until
from tests.console.relay import Relay
from tests.console.test_cli_twins_print_columns_and_json import vmesh
from tests.console.test_console_finds_proxies_through_discovery import overview
from vm_mesh import paths


def listed_at(endpoints: Path, port: int) -> None:
    endpoints.write_text('[[instance]]\nservice = "edge"\nid = "edge-1"\n'
                         f'address = "127.0.0.1"\nport = 1\nadmin_port = {port}\n')


async def test_a_proxy_listed_at_a_new_address_keeps_being_polled_there(
        start_admin, vmesh_root: Path) -> None:
    assert vmesh("identity", "init").returncode == 0
    assert vmesh("identity", "operator", "ann").returncode == 0
    edge = start_admin("edge", tls=True, ca_dir=paths.state_dir("identity"))
    # at the new address the first answer of each connection comes 2.5 s late: the first
    # poll there is still under way when the poll timer of the old address comes due
    slow_path = Relay(("127.0.0.1", edge.port), hold_answers_s=2.5)
    endpoints = vmesh_root / "endpoints.toml"
    listed_at(endpoints, edge.port)
    console = ConsoleApp(Sources([StaticFileAdmins(endpoints)]))
    try:
        async with console.run_test(size=(160, 48)) as pilot:
            def shown(port: int) -> bool:
                row = overview(console).get("edge-1")
                return row is not None and (row[1], row[8]) == ("ready", f"127.0.0.1:{port}")

            await until(pilot, lambda: shown(edge.port), "edge-1 ready at its first address")
            listed_at(endpoints, slow_path.port)
            await until(pilot, lambda: shown(slow_path.port), "edge-1 ready at its new address",
                        deadline_s=20)
            polled = console.data.statuses["edge-1"].last_ok
            await until(pilot, lambda: console.data.statuses["edge-1"].last_ok > polled,
                        "the next poll at the new address")
    finally:
        slow_path.close()
