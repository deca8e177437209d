"""The certificate authority on disk: generations of anchor + issuer, and the trust bundle.

Layout under `paths.state_dir("identity")`:

    ca.json                 trust domain and the active generation
    gen-<n>/anchor.pem      trust anchor (10 years); anchor.key may be passphrase-encrypted
    gen-<n>/issuer.pem      issuer (1 year, path length 0) and issuer.key, signs every leaf
    bundle.pem              the anchors peers trust: every generation not retired
    ca.db                   tokens and the issuance log (identity.store)

Rotation adds a generation and keeps the older ones in the bundle, so leaves
of both verify during the overlap; retiring drops a generation from the bundle.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from identity import pki, spiffe
from vm_mesh.errors import UserError


@dataclass(frozen=True, slots=True)
class Generation:
    """One anchor and the issuer it signed."""

    number: int
    anchor: x509.Certificate
    issuer: x509.Certificate
    retired: bool


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A loaded CA: its trust domain, generations, the bundle, and the issuer that signs (the
    active generation's, unless loaded for another)."""

    directory: Path
    trust_domain: str
    generations: tuple[Generation, ...]
    active: pki.CertifiedKey  # the issuer that signs, with its key
    issuing: int  # the number of its generation

    @property
    def bundle(self) -> list[x509.Certificate]:
        return [g.anchor for g in self.generations if not g.retired]

    def trusts(self, number: int) -> bool:
        """Whether generation `number` exists and is not retired."""
        return any(g.number == number and not g.retired for g in self.generations)

    @property
    def database(self) -> Path:
        return self.directory / "ca.db"


def stamp(directory: Path) -> tuple[int, int]:
    """Changes whenever `init`, `rotate` or `retire` rewrite the CA in `directory` (ca.json is
    replaced by a rename each time): its inode and modification time."""
    status = _meta_path(directory).stat()
    return status.st_ino, status.st_mtime_ns


def _meta_path(directory: Path) -> Path:
    return directory / "ca.json"


def _read_meta(directory: Path) -> dict:
    path = _meta_path(directory)
    if not path.is_file():
        raise UserError(
            f"no certificate authority in {directory} (run `vmesh identity init` first)"
        )
    return json.loads(path.read_text())


def _write_generation(
    directory: Path, number: int, trust_domain: str, passphrase: bytes | None, now: datetime
) -> None:
    anchor = pki.create_anchor(trust_domain, now=now)
    issuer = pki.create_issuer(anchor, trust_domain, now=now)
    gen = directory / f"gen-{number}"
    pki.write_private(gen / "anchor.key", pki.key_pem(anchor.key, passphrase))
    pki.write_file(gen / "anchor.pem", pki.cert_pem(anchor.cert))
    pki.write_private(gen / "issuer.key", pki.key_pem(issuer.key))
    pki.write_file(gen / "issuer.pem", pki.cert_pem(issuer.cert))


def _write_meta_and_bundle(directory: Path, meta: dict) -> None:
    pki.write_file(_meta_path(directory), json.dumps(meta, indent=2).encode())
    anchors = [
        pki.load_certs((directory / f"gen-{n}" / "anchor.pem").read_bytes())[0]
        for n in meta["generations"]
        if n not in meta["retired"]
    ]
    pki.write_file(directory / "bundle.pem", pki.cert_pem(*anchors))


def init(
    directory: Path, trust_domain: str, passphrase: bytes | None = None, now: datetime | None = None
) -> None:
    """Create the first anchor and issuer; refuses when a CA already exists there."""
    spiffe.check_trust_domain(trust_domain)
    if _meta_path(directory).exists():
        raise UserError(
            f"a certificate authority already exists in {directory}; "
            "refusing to overwrite it (use `vmesh identity rotate` to add a new anchor)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    _write_generation(directory, 1, trust_domain, passphrase, now or pki.utcnow())
    meta = {"trust_domain": trust_domain, "active": 1, "generations": [1], "retired": []}
    _write_meta_and_bundle(directory, meta)


def rotate(directory: Path, passphrase: bytes | None = None, now: datetime | None = None) -> int:
    """Add a new anchor + issuer, make it active, keep older anchors trusted; returns its number."""
    meta = _read_meta(directory)
    number = max(meta["generations"]) + 1
    _write_generation(directory, number, meta["trust_domain"], passphrase, now or pki.utcnow())
    meta["generations"].append(number)
    meta["active"] = number
    _write_meta_and_bundle(directory, meta)
    return number


def retire(directory: Path, number: int) -> None:
    """Drop an old generation's anchor from the bundle; the active one cannot be retired."""
    meta = _read_meta(directory)
    if number not in meta["generations"]:
        raise UserError(f"no generation {number} (see `vmesh identity status`)")
    if number == meta["active"]:
        raise UserError(f"generation {number} is active; rotate first, then retire it")
    if number not in meta["retired"]:
        meta["retired"].append(number)
    _write_meta_and_bundle(directory, meta)


def generations(directory: Path) -> tuple[str, int, tuple[Generation, ...]]:
    """The trust domain, the active generation's number and every generation of the CA in
    `directory`, read without any key (what `vmesh check` judges)."""
    meta = _read_meta(directory)
    found = []
    for number in meta["generations"]:
        gen = directory / f"gen-{number}"
        found.append(
            Generation(
                number=number,
                anchor=pki.load_certs((gen / "anchor.pem").read_bytes())[0],
                issuer=pki.load_certs((gen / "issuer.pem").read_bytes())[0],
                retired=number in meta["retired"],
            )
        )
    return meta["trust_domain"], meta["active"], tuple(found)


def load(directory: Path, issuing: int | None = None) -> CertificateAuthority:
    """Load the CA with the key of the issuer that signs: generation `issuing`'s, by default
    the active one's (the anchor keys are not needed to issue)."""
    trust_domain, active, found = generations(directory)
    signing = active if issuing is None else issuing
    if not any(g.number == signing and not g.retired for g in found):
        raise UserError(f"generation {signing} of the CA in {directory} is retired or gone")
    issuer_dir = directory / f"gen-{signing}"
    issuer = pki.CertifiedKey(
        key=pki.load_key((issuer_dir / "issuer.key").read_bytes()),
        cert=pki.load_certs((issuer_dir / "issuer.pem").read_bytes())[0],
    )
    return CertificateAuthority(directory, trust_domain, found, issuer, signing)


def served_anchor(ca: CertificateAuthority) -> x509.Certificate:
    """The anchor that the identity service's own certificate chains to, which is what a
    join token pins: the service signs with the generation it started on until it restarts
    (see `identity.service`), so after `rotate` that is not yet the active one. Before the
    service first ran, or when its generation is retired, the active generation's."""
    try:
        presented = pki.load_certs((server_directory(ca) / "cert.pem").read_bytes())[1]
    except (OSError, ValueError, IndexError):
        presented = None
    for generation in ca.generations:
        if generation.issuer == presented and not generation.retired:
            return generation.anchor
    return next(g.anchor for g in ca.generations if g.number == ca.issuing)


def server_directory(ca: CertificateAuthority) -> Path:
    """Where the identity service keeps the certificate it presents, and its key."""
    return ca.directory / "server"
