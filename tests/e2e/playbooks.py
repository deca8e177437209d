"""Running the real playbooks of `ansible/` against the namespace hosts, and building wheels."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.sshhosts import SshCluster, SshHost

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "ansible"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                    re.MULTILINE)


@dataclass(frozen=True)
class PlaybookRun:
    """What ansible-playbook printed, and its per-host recap."""

    returncode: int
    output: str
    recap: dict[str, dict[str, int]]

    def changed(self) -> dict[str, int]:
        return {host: counts["changed"] for host, counts in self.recap.items()}

    @classmethod
    def of(cls, result: subprocess.CompletedProcess[str]) -> PlaybookRun:
        """The run that `result` (of ansible-playbook) reports."""
        recap = {
            m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)),
                         "unreachable": int(m.group(4)), "failed": int(m.group(5))}
            for m in _RECAP.finditer(result.stdout)
        }
        return cls(result.returncode, result.stdout + result.stderr, recap)


def build_wheel(dest: Path, pure: bool = False) -> Path:
    """`pip wheel --no-deps` of this repository into `dest/wheels`, compiled, or `pure`: the
    universal wheel of `VMESH_PURE_PYTHON=1`, nothing compiled (built from a copy of the
    source without the compiled modules, which would be packaged)."""
    source = REPO
    if pure:
        source = dest / "src-pure"
        shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
            ".venv", ".git", "*.egg-info", "build", "__pycache__", "*_cache", "*.so", "tests"))
    wheels = dest / "wheels"
    wheels.mkdir(exist_ok=True)
    env = {**os.environ, "VMESH_PURE_PYTHON": "1"} if pure else None
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(wheels), str(source)],
                   check=True, capture_output=True, text=True, env=env)
    return wheels


def release_of(wheel: Path, version: str, patch: Callable[[Path], None] | None = None) -> Path:
    """`wheel` released again as `version`, beside it, with `patch` applied to its files
    first (a broken release): what a release that changes no compiled module ships, made
    without compiling them again (minutes on a small machine). `wheel unpack` and `wheel
    pack` keep the wheel's RECORD of hashes true to its files."""
    with tempfile.TemporaryDirectory(dir=wheel.parent.parent) as work:
        subprocess.run([sys.executable, "-m", "wheel", "unpack", "-d", work, str(wheel)],
                       check=True, capture_output=True, text=True)
        (tree,) = Path(work).iterdir()
        (info,) = tree.glob("*.dist-info")
        metadata = info / "METADATA"
        metadata.write_text(re.sub(r"(?m)^Version: .*$", f"Version: {version}",
                                   metadata.read_text(), count=1))
        name = info.name.partition("-")[0]
        info.rename(tree / f"{name}-{version}.dist-info")
        init = tree / "vm_mesh" / "__init__.py"
        init.write_text(re.sub(r'(?m)^__version__ = ".*"$', f'__version__ = "{version}"',
                               init.read_text(), count=1))
        if patch is not None:
            patch(tree)
        subprocess.run([sys.executable, "-m", "wheel", "pack", "-d", str(wheel.parent),
                        str(tree)], check=True, capture_output=True, text=True)
    (released,) = wheel.parent.glob(f"{name}-{version}-*.whl")
    return released


def service_vars(host: SshHost, service: str, app_port: int = 8080) -> dict[str, str]:
    """Inventory variables that run `service` on `host`: the test backend (it answers with
    its name `<service>@<host>` and the caller's identity) as the app, from the host's venv."""
    command = [str(host.vmesh_root / "opt/vmesh/venv/bin/python"),
               str(REPO / "tests/integration/backend.py"),
               "--name", f"{service}@{host.name}", "--port", str(app_port)]
    services = [{"name": service, "app_port": app_port, "command": command,
                 "drain_timeout": "5s"}]
    return {"vmesh_proxy_services": f"'{json.dumps(services, separators=(',', ':'))}'",
            # mDNS on the host's network only, not also on its loopback
            "vmesh_discovery_interfaces": f"'{json.dumps([host.address])}'"}


CONSTRAINTS = PLAYBOOKS / "roles/vmesh/files/constraints.txt"


def build_wheelhouse(dest: Path, wheel: Path) -> Path:
    """The dependencies of `wheel` as wheels, at the versions role vmesh pins (its
    constraints.txt), so hosts install with `--no-index` (offline)."""
    wheelhouse = dest / "wheelhouse"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "-c", str(CONSTRAINTS),
                    "-w", str(wheelhouse), str(wheel)], check=True, capture_output=True, text=True)
    return wheelhouse


def run_playbook(cluster: SshCluster, inventory: Path, playbook: str,
                 extra_vars: dict[str, str], timeout_s: float = 240,
                 limit: str | None = None) -> PlaybookRun:
    """ansible-playbook with the repo's roles (on the hosts of `limit`, if given); returns the
    recap per host."""
    env = cluster.ansible_env()
    env["ANSIBLE_ROLES_PATH"] = str(PLAYBOOKS / "roles")
    argv = [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(PLAYBOOKS / playbook)]
    argv += ["--extra-vars", json.dumps(extra_vars)]
    if limit is not None:
        argv += ["--limit", limit]
    return PlaybookRun.of(subprocess.run(argv, env=env, capture_output=True, text=True,
                                         timeout=timeout_s, cwd=PLAYBOOKS))
