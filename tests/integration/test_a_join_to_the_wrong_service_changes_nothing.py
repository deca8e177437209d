"""A refused `vmesh join` fails in one line naming the URL and the reason, exits non-zero,
and leaves the host as it was: no certificate, no service file, no mesh.toml."""

from pathlib import Path

from tests.integration.identity_service import running_identity_service, vmesh
from tests.integration.test_join_refusals_are_one_line import join, one_line, two_authorities


def refused_and_untouched(host: Path, result, url: str) -> str:
    """The one line of a refused join, once it is known to name `url` and to have left
    `host` as it was."""
    assert result.returncode != 0
    line = one_line(result.stderr)
    assert url in line and "this host was left as it was" in line
    assert not (host / "var/lib/vmesh/api").exists()
    assert not (host / "etc/vmesh/services/api.toml").exists()
    assert not (host / "etc/vmesh/mesh.toml").exists()
    return line


def test_a_refused_join_writes_no_service_file_and_a_later_one_works(tmp_path: Path) -> None:
    ca_root, other_root = two_authorities(tmp_path)
    foreign = vmesh(other_root, "identity", "token", "create", "--host", "vm1",
                    "--services", "api").stdout.strip()
    token = vmesh(ca_root, "identity", "token", "create", "--host", "vm1",
                  "--services", "api").stdout.strip()
    host = tmp_path / "vm1"
    with running_identity_service(ca_root) as ca:
        refused = join(host, foreign, ca.url)
        assert "anchor pin mismatch" in refused_and_untouched(host, refused, ca.url)
        proxy = vmesh(host, "proxy", "run", "api", check=False)
        assert proxy.returncode != 0 and "api.toml" in proxy.stderr  # no half-set-up service
        joined = join(host, token, ca.url)
    assert joined.returncode == 0, joined.stderr
    assert (host / "etc/vmesh/services/api.toml").is_file()
    assert (host / "var/lib/vmesh/api/cert.pem").is_file()
