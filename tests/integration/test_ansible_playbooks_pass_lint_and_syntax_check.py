"""The playbooks ship as product: ansible-lint (production profile) and syntax-check pass."""

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
