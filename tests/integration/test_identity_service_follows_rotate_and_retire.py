"""A running identity service follows `vmesh identity rotate` and `retire` without a restart:
the bundle it hands out changes at once, while it signs with the generation it started on
until it restarts (a rollout hands every proxy the new anchor first), or until that
generation is retired. A join token pins the anchor the service presents, whichever it is."""

import ssl
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from identity import castate, pki
from tests.integration.identity_service import running_identity_service, vmesh


def join(root: Path, ca_root: Path, url: str, host: str) -> Path:
    token = vmesh(ca_root, "identity", "token", "create", "--host", host,
                  "--services", "api").stdout.strip()
    vmesh(root, "join", "--token", token, "--identity", url, "--service", "api",
          "--app-port", "8080", "--host", host, "--no-start")
    return root / "var/lib/vmesh/api"


def signed_by(state: Path, generation: castate.Generation) -> bool:
    leaf = pki.load_certs((state / "cert.pem").read_bytes())[0]
    try:
        leaf.verify_directly_issued_by(generation.issuer)
    except (ValueError, InvalidSignature):
        return False
    return True


def bundle(state: Path) -> list[x509.Certificate]:
    return pki.load_certs((state / "bundle.pem").read_bytes())


def test_the_bundle_follows_at_once_and_the_signer_at_restart(tmp_path: Path) -> None:
    ca_root = tmp_path / "ca"
    vmesh(ca_root, "identity", "init")
    with running_identity_service(ca_root) as service:
        vmesh(ca_root, "identity", "rotate")
        during = join(tmp_path / "vm1", ca_root, service.url, "vm1")
    old, new = castate.load(ca_root / "var/lib/vmesh/identity").generations
    assert signed_by(during, old) and bundle(during) == [old.anchor, new.anchor]

    with running_identity_service(ca_root) as service:
        after = join(tmp_path / "vm2", ca_root, service.url, "vm2")
        vmesh(ca_root, "identity", "retire", str(old.number))
        trusted = ssl.create_default_context(cafile=after / "bundle.pem")
        published = httpx.get(f"{service.url}/v1/bundle", verify=trusted)
    assert signed_by(after, new) and bundle(after) == [old.anchor, new.anchor]
    assert pki.load_certs(published.content) == [new.anchor]


def test_retiring_the_generation_it_signs_with_moves_it_to_the_active_one(
    tmp_path: Path,
) -> None:
    ca_root = tmp_path / "ca"
    vmesh(ca_root, "identity", "init")
    with running_identity_service(ca_root) as service:
        vmesh(ca_root, "identity", "rotate")
        vmesh(ca_root, "identity", "retire", "1")
        state = join(tmp_path / "vm1", ca_root, service.url, "vm1")
        reload = service.wait_for_log(
            lambda line: line.get("msg") == "certificate authority reloaded")
    new = castate.load(ca_root / "var/lib/vmesh/identity").generations[-1]
    assert signed_by(state, new) and bundle(state) == [new.anchor]
    assert (reload["signing"], reload["anchors"]) == (new.number, [new.number])
