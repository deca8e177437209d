"""A running identity service follows `vmesh identity rotate` and `retire` without a restart:
a token made after a rotation pins the new anchor and joins with a leaf of the new issuer,
and a retired anchor leaves the bundle the service hands out."""

import ssl
from pathlib import Path

import httpx

from identity import castate, pki
from tests.integration.identity_service import running_identity_service, vmesh


def join(root: Path, ca_root: Path, url: str, host: str) -> Path:
    token = vmesh(ca_root, "identity", "token", "create", "--host", host,
                  "--services", "api").stdout.strip()
    vmesh(root, "join", "--token", token, "--identity", url, "--service", "api",
          "--app-port", "8080", "--host", host, "--no-start")
    return root / "var/lib/vmesh/api"


def test_rotate_and_retire_take_effect_in_the_running_service(tmp_path: Path) -> None:
    ca_root = tmp_path / "ca"
    ca_dir = ca_root / "var/lib/vmesh/identity"
    vmesh(ca_root, "identity", "init")
    with running_identity_service(ca_root) as service:
        first = join(tmp_path / "vm1", ca_root, service.url, "vm1")
        vmesh(ca_root, "identity", "rotate")
        second = join(tmp_path / "vm2", ca_root, service.url, "vm2")
        old, new = castate.load(ca_dir).generations

        leaf = pki.load_certs((second / "cert.pem").read_bytes())[0]
        leaf.verify_directly_issued_by(new.issuer)
        assert pki.load_certs((second / "bundle.pem").read_bytes()) == [old.anchor, new.anchor]
        pki.load_certs((first / "cert.pem").read_bytes())[0].verify_directly_issued_by(old.issuer)

        vmesh(ca_root, "identity", "retire", str(old.number))
        trusted = ssl.create_default_context(cafile=second / "bundle.pem")
        published = httpx.get(f"{service.url}/v1/bundle", verify=trusted)
        assert pki.load_certs(published.content) == [new.anchor]
        service.wait_for_log(lambda line: line.get("msg") == "certificate authority reloaded"
                             and line["rotated"] is False)
        reloads = [line["rotated"] for line in service.logs
                   if line.get("msg") == "certificate authority reloaded"]
    assert reloads == [True, False]
