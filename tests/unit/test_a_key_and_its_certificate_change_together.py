"""A renewal replaces a service's key, certificate and bundle together: one cut off halfway
(the renewing process killed) leaves either the old set or, once the next reader settles it,
the new one; never a new key beside an old certificate. A reader never drops a stage that
may still be being written."""

from pathlib import Path

from console.client import OperatorCredentials
from identity import castate, pki
from identity.client import LeafFiles
from vm_mesh.defaults import LEAF_FILES
from vm_mesh.files import STAGE, settle, write_file, write_together

OLD = [("bundle.pem", b"old bundle", 0o644), ("key.pem", b"old key", 0o600),
       ("cert.pem", b"old cert", 0o644)]
NEW = [(name, data.replace(b"old", b"new"), mode) for name, data, mode in OLD]


def contents(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in LEAF_FILES}


def test_files_written_together_are_in_place_with_their_modes(tmp_path: Path) -> None:
    write_together(tmp_path, OLD)
    write_together(tmp_path, NEW)
    assert contents(tmp_path) == {name: data for name, data, _ in NEW}
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / STAGE).exists()


def test_a_stage_cut_off_while_moving_is_finished_by_the_next_reader(tmp_path: Path) -> None:
    write_together(tmp_path, OLD)
    stage = tmp_path / STAGE
    stage.mkdir()
    for name, data, _ in NEW:
        (stage / name).write_bytes(data)
    for name in ("bundle.pem", "key.pem"):  # killed after moving these two
        (stage / name).replace(tmp_path / name)

    settle(tmp_path, LEAF_FILES)

    assert contents(tmp_path) == {name: data for name, data, _ in NEW}
    assert not stage.exists()


def test_a_stage_cut_off_while_writing_is_left_and_the_old_files_stay(tmp_path: Path) -> None:
    write_together(tmp_path, OLD)
    stage = tmp_path / STAGE
    stage.mkdir()
    for name, data, _ in NEW[:2]:  # killed, or still writing, before the certificate
        (stage / name).write_bytes(data)

    settle(tmp_path, LEAF_FILES)
    assert contents(tmp_path) == {name: data for name, data, _ in OLD}

    write_together(tmp_path, NEW)  # the next writer starts afresh
    assert contents(tmp_path) == {name: data for name, data, _ in NEW}
    assert not stage.exists()


def test_a_leaf_is_read_after_a_cut_off_renewal_is_settled(tmp_path: Path) -> None:
    castate.init(tmp_path / "ca", "vmesh.local")
    ca = castate.load(tmp_path / "ca")
    files = LeafFiles(tmp_path / "api")
    pairs = []
    for _ in range(2):
        key = pki.generate_key()
        leaf = pki.issue_leaf(ca.active, key.public_key(), spiffe_id="spiffe://vmesh.local/svc/api",
                              common_name="api", trust_domain="vmesh.local")
        pairs.append((pki.key_pem(key), pki.cert_pem(leaf, ca.active.cert), leaf))
    bundle = pki.cert_pem(*ca.bundle)
    files.save(pairs[0][0], pairs[0][1].decode(), bundle.decode())
    stage = files.directory / STAGE  # the second renewal, killed after moving its key
    write_file(stage / "bundle.pem", bundle)
    write_file(stage / "key.pem", pairs[1][0], 0o600)
    write_file(stage / "cert.pem", pairs[1][1])
    (stage / "key.pem").replace(files.key)

    assert files.leaf() == pairs[1][2]
    assert files.key.read_bytes() == pairs[1][0] and files.cert.read_bytes() == pairs[1][1]


def test_operator_credentials_are_read_after_a_cut_off_operator_run_is_settled(
    tmp_path: Path,
) -> None:
    castate.init(tmp_path / "ca", "vmesh.local")
    ca = castate.load(tmp_path / "ca")
    operator = tmp_path / "operator"
    pairs = []
    for _ in range(2):
        key = pki.generate_key()
        leaf = pki.issue_leaf(ca.active, key.public_key(),
                              spiffe_id="spiffe://vmesh.local/operator/alice",
                              common_name="alice", trust_domain="vmesh.local")
        pairs.append((pki.key_pem(key), pki.cert_pem(leaf, ca.active.cert)))
    bundle = pki.cert_pem(*ca.bundle)
    LeafFiles(operator).save(pairs[0][0], pairs[0][1].decode(), bundle.decode())
    stage = operator / STAGE  # the second run, cut off after moving its key
    write_file(stage / "bundle.pem", bundle)
    write_file(stage / "key.pem", pairs[1][0], 0o600)
    write_file(stage / "cert.pem", pairs[1][1])
    (stage / "key.pem").replace(operator / "key.pem")

    credentials = OperatorCredentials(operator / "cert.pem", operator / "key.pem",
                                      operator / "bundle.pem")
    credentials.ssl_context()  # the key and the certificate load as a pair
    assert (operator / "cert.pem").read_bytes() == pairs[1][1]
    assert not stage.exists()
