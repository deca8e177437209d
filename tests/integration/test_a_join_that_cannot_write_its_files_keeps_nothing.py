"""A `vmesh join` whose certificate was issued but whose files cannot be written (a disk that
is full, a path whose parent is a regular file) keeps nothing of the join: no leaf, no
mesh.toml, no service file, no staged leftovers. Its one line says what could not be written
and that the token is spent, so the operator asks for a new one; with the path fixed and a
new token the host joins."""

from pathlib import Path

import pytest

from tests.integration.identity_service import running_identity_service, vmesh
from tests.integration.test_join_refusals_are_one_line import join, one_line


def token_for_vm1(ca_root: Path) -> str:
    return vmesh(ca_root, "identity", "token", "create", "--host", "vm1",
                 "--services", "api").stdout.strip()


def files_under(root: Path) -> dict[str, bytes]:
    """Every file under `root` (none of them a directory), by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("blocked", ["etc/vmesh/services", "var/lib/vmesh/api"])
def test_the_join_keeps_nothing_and_says_the_token_is_spent(tmp_path: Path, blocked: str) -> None:
    ca_root, host = tmp_path / "ca", tmp_path / "vm1"
    vmesh(ca_root, "identity", "init")
    (host / blocked).parent.mkdir(parents=True)
    (host / blocked).write_text("a regular file where a directory is expected\n")
    before = files_under(host)
    with running_identity_service(ca_root) as ca:
        token = token_for_vm1(ca_root)
        result = join(host, token, ca.url)
        assert result.returncode == 1
        line = one_line(result.stderr)
        assert f"{host / blocked}" in line
        assert "the token is spent: ask for a new one" in line
        assert files_under(host) == before

        (host / blocked).unlink()
        assert "token.already_used" in one_line(join(host, token, ca.url).stderr)
        again = join(host, token_for_vm1(ca_root), ca.url)
    assert again.returncode == 0, again.stderr
    assert (host / "var/lib/vmesh/api/cert.pem").is_file()
    assert (host / "etc/vmesh/services/api.toml").is_file()
