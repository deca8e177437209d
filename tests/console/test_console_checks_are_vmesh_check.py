"""The console's checks view shows what `vmesh check` with the same options finds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from textual.widgets import DataTable

from console.cli import console_app
from tests.console.pilot import table_rows, until
from tests.console.test_cli_twins_print_columns_and_json import vmesh
from tests.integration.mesh import Mesh
from tests.support import free_port
from vm_mesh import paths
from vm_mesh.cli import build_parser


async def test_checks_view_lists_the_findings_of_vmesh_check(vmesh_root: Path,
                                                             tmp_path: Path) -> None:
    # no proxy anywhere, a cert-helper whose leaf expired, an identity service that is down,
    # --ca naming a file that holds no certificate, and the mesh's CA kept on this host
    Mesh(vmesh_root).issue("prometheus", now=datetime.now(UTC) - timedelta(hours=26))
    paths.mesh_config().parent.mkdir(parents=True, exist_ok=True)
    paths.mesh_config().write_text(f'identity_url = "https://127.0.0.1:{free_port()}"\n')
    not_a_bundle = tmp_path / "bundle.pem"
    not_a_bundle.write_text("not a certificate\n")
    options = ["--no-local", "--no-host-discovery", "--ca", str(not_a_bundle)]

    check = vmesh("check", "--json", *options)
    assert check.returncode == 1
    expected = sorted((f["status"], f["check"], f["target"], f["message"])
                      for f in map(json.loads, check.stdout.splitlines()))
    assert [row[:2] for row in expected] == [
        ("fail", "admin"), ("fail", "certs"), ("fail", "identity"), ("ok", "identity")]

    console = console_app(build_parser().parse_args(["console", "--view", "checks", *options]))
    async with console.run_test(size=(160, 48)) as pilot:
        def shown() -> list[tuple[str, ...]]:
            return sorted(tuple(row) for row in table_rows(console.view.query_one(DataTable)))

        await until(pilot, lambda: shown() == expected, f"the findings of vmesh check: {expected}")
