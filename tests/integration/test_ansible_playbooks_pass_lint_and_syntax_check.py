"""The playbooks ship as product: ansible-lint (production profile) and syntax-check pass."""

import configparser
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "ansible"
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "ANSIBLE_ROLES_PATH": str(PLAYBOOKS / "roles"),
           "HOME": str(Path.home()), "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1"}
    return subprocess.run(argv, cwd=PLAYBOOKS, env=env, capture_output=True, text=True,
                          timeout=240)


@pytest.mark.parametrize("playbook", sorted(p.name for p in PLAYBOOKS.glob("*.yml")))
def test_playbook_passes_syntax_check(playbook: str) -> None:
    result = _run(str(BIN / "ansible-playbook"), "--syntax-check",
                  "-i", "inventory.example.ini", playbook)
    assert result.returncode == 0, result.stdout + result.stderr


def test_playbooks_and_roles_pass_ansible_lint_production_profile() -> None:
    result = _run(str(BIN / "ansible-lint"), "--offline", "--nocolor", "--profile", "production")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr


def render_unit(tmp_path: Path, **variables: str) -> configparser.ConfigParser:
    """Role vmesh's unit template, rendered by ansible's own template module."""
    dest = tmp_path / f"{variables['vmesh_process_name']}.service"
    extra = {"vmesh_root": "/", "vmesh_prefix": "", "vmesh_user": "vmesh",
             "vmesh_manage_user": "true", "vmesh_stop_timeout_s": "60",
             "vmesh_process_args": ["run", "--supervise", "web"], **variables}
    result = _run(str(BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
                  "-m", "ansible.builtin.template",
                  "-a", f"src={PLAYBOOKS}/roles/vmesh/templates/vmesh.service.j2 dest={dest}",
                  "-e", json.dumps(extra))
    assert result.returncode == 0, result.stdout + result.stderr
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(dest)
    return unit


def test_a_unit_of_the_mesh_user_gets_its_run_directory_back_after_a_reboot(
    tmp_path: Path,
) -> None:
    proxy = render_unit(tmp_path, vmesh_process_name="run-web")["Service"]
    assert (proxy["User"], proxy["RuntimeDirectory"]) == ("vmesh", "vmesh")
    assert proxy["RuntimeDirectoryPreserve"] == "yes"
    # a cert-helper runs as its program's user: /run/vmesh stays the mesh user's
    helper = render_unit(tmp_path, vmesh_process_name="cert-helper-prometheus",
                         vmesh_process_user="prometheus")["Service"]
    assert helper["User"] == "prometheus" and "RuntimeDirectory" not in helper
