"""`vmesh join` refusals are one line naming what failed: a token that is not one, a token
made for another CA (anchor pin mismatch), an impostor (a `hostile_identity` service) that
lists the real anchor beside its own (the token never reaches it), a published bundle too
large to be one (it is not read whole); `--discovery consul` writes a Consul table into
mesh.toml, and one that contradicts mesh.toml is refused."""

from pathlib import Path

from identity.client import MAX_BUNDLE_BYTES
from tests.integration.hostile_identity import Reply, hostile_service, tls_of
from tests.integration.identity_service import running_identity_service, vmesh
from vm_mesh.config import load_mesh_config, load_service_config


def join(root: Path, token: str, url: str, *extra: str):
    return vmesh(root, "join", "--token", token, "--identity", url, "--service", "api",
                 "--app-port", "8080", "--host", "vm1", "--no-start", *extra, check=False)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def two_authorities(tmp_path: Path) -> tuple[Path, Path]:
    """The roots of two CAs: the one the tests join, and a stranger."""
    ca_root, other_root = tmp_path / "ca", tmp_path / "other"
    vmesh(ca_root, "identity", "init")
    vmesh(other_root, "identity", "init")
    return ca_root, other_root


def test_malformed_and_foreign_tokens_are_refused_in_one_line(tmp_path: Path) -> None:
    ca_root, other_root = two_authorities(tmp_path)
    foreign = vmesh(other_root, "identity", "token", "create", "--host", "vm1",
                    "--services", "api").stdout.strip()
    with running_identity_service(ca_root) as ca:
        malformed = join(tmp_path / "vm1", "not-a-token", ca.url)
        assert malformed.returncode != 0 and "token.malformed" in one_line(malformed.stderr)
        mismatch = join(tmp_path / "vm2", foreign, ca.url)
        assert mismatch.returncode != 0 and "anchor pin mismatch" in one_line(mismatch.stderr)
    assert not (tmp_path / "vm2/var/lib/vmesh/api/cert.pem").exists()


def impostor(own_ca: Path, published_bundle: bytes):
    """An HTTPS identity service of another CA that publishes `published_bundle` (the real
    CA's anchors are public, so it can list them beside its own); yields its URL and the
    join requests it received."""
    return hostile_service(Reply(published_bundle), tls=tls_of(own_ca))


def test_a_token_is_not_sent_to_an_impostor_that_lists_the_real_anchor(tmp_path: Path) -> None:
    ca_root, other_root = two_authorities(tmp_path)
    token = vmesh(ca_root, "identity", "token", "create", "--host", "vm1",
                  "--services", "api").stdout.strip()
    real = (ca_root / "var/lib/vmesh/identity/bundle.pem").read_bytes()
    own = (other_root / "var/lib/vmesh/identity/bundle.pem").read_bytes()
    with impostor(other_root / "var/lib/vmesh/identity", real + own) as (url, received):
        result = join(tmp_path / "vm1", token, url)
    assert result.returncode != 0
    assert "does not prove it is the CA this token was made for" in one_line(result.stderr)
    assert received == []
    assert not (tmp_path / "vm1/var/lib/vmesh/api/cert.pem").exists()


def test_consul_discovery_is_written_with_its_agent(tmp_path: Path) -> None:
    vmesh(tmp_path / "ca", "identity", "init")
    token = vmesh(tmp_path / "ca", "identity", "token", "create", "--host", "vm1",
                  "--services", "api").stdout.strip()
    with running_identity_service(tmp_path / "ca") as ca:
        result = join(tmp_path / "vm1", token, ca.url, "--discovery", "consul",
                      "--consul-url", "http://127.0.0.1:18500")
        assert result.returncode == 0, result.stderr
        again = join(tmp_path / "vm1", token, ca.url, "--discovery", "mdns")
    config = load_service_config(tmp_path / "vm1/etc/vmesh/services/api.toml").config
    mesh = load_mesh_config(tmp_path / "vm1/etc/vmesh/mesh.toml")
    assert mesh.discovery is not None and mesh.discovery.backend == "consul"
    assert mesh.discovery.consul_url == "http://127.0.0.1:18500"
    assert config.identity_url == ca.url and config.discovery is None
    assert again.returncode != 0
    assert "already chooses discovery backend 'consul'" in one_line(again.stderr)


def test_a_managed_service_file_is_kept_and_only_the_certificate_fetched(tmp_path: Path) -> None:
    vmesh(tmp_path / "ca", "identity", "init")
    token = vmesh(tmp_path / "ca", "identity", "token", "create", "--host", "vm1",
                  "--services", "api").stdout.strip()
    service_file = tmp_path / "vm1/etc/vmesh/services/api.toml"
    service_file.parent.mkdir(parents=True)
    written = 'service = "api"\napp_port = 9090\n# managed by Ansible\n'
    service_file.write_text(written)
    with running_identity_service(tmp_path / "ca") as ca:
        no_port = vmesh(tmp_path / "vm1", "join", "--token", token, "--identity", ca.url,
                        "--service", "api", "--host", "vm1", "--no-start", check=False)
        assert no_port.returncode != 0 and "--app-port is required" in one_line(no_port.stderr)
        kept = vmesh(tmp_path / "vm1", "join", "--token", token, "--identity", ca.url,
                     "--service", "api", "--host", "vm1", "--no-start", "--use-service-file",
                     check=False)
    assert kept.returncode == 0, kept.stderr
    assert service_file.read_text() == written
    assert (tmp_path / "vm1/var/lib/vmesh/api/cert.pem").is_file()


def test_a_published_bundle_over_the_limit_is_refused_and_no_token_sent(tmp_path: Path) -> None:
    ca_root, other_root = two_authorities(tmp_path)
    token = vmesh(ca_root, "identity", "token", "create", "--host", "vm1",
                  "--services", "api").stdout.strip()
    real = (ca_root / "var/lib/vmesh/identity/bundle.pem").read_bytes()
    flood = real * (MAX_BUNDLE_BYTES * 64 // len(real))  # the real anchor, over and over
    with impostor(other_root / "var/lib/vmesh/identity", flood) as (url, received):
        result = join(tmp_path / "vm1", token, url)
    assert result.returncode != 0
    line = one_line(result.stderr)
    assert "identity.bundle_too_large" in line and url in line
    assert received == []
    assert not (tmp_path / "vm1/var/lib/vmesh/api").exists()
