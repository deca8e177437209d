"""`vmesh demo --no-console` brings up the whole demo mesh, sends traffic and stops cleanly."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.mesh import REPO


def test_demo_serves_traffic_through_every_tier_and_cleans_up(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vm_mesh",
            "demo",
            "--dir",
            str(tmp_path / "demo"),
            "--no-console",
            "--duration",
            "4",
            "--rate",
            "20",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert sum(line.endswith("  ready") for line in result.stdout.splitlines()) == 6
    counts = json.loads(result.stdout.split("responses:", 1)[1])
    assert counts.get("200", 0) > 20
    assert set(counts) == {"200"}  # web answers 200; downstream failures show in its body
    # every instance got its certificate from the demo's identity service, by token
    ca_db = tmp_path / "demo/ca/var/lib/vmesh/identity/ca.db"
    import sqlite3

    with sqlite3.connect(ca_db) as db:
        identities = {row[0] for row in db.execute("SELECT identity FROM certificates")}
    assert identities == {f"spiffe://vmesh.local/svc/{s}" for s in ("web", "api", "store")}
    # and the processes are gone, and no socket is left behind
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True)
    assert leftovers.stdout == b""
    sockets = [path for path in (tmp_path / "demo").rglob("*.sock")
               if path.is_socket() or path.is_symlink()]
    assert sockets == []
