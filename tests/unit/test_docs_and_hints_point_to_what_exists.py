"""What the docs and `vmesh check`'s hints send a reader to exists in this repository, and the
hints for an expiring issuer or anchor name the command that replaces it."""

import re
from datetime import timedelta
from pathlib import Path

import pytest

from console.api import CertInfo
from console.models.checks import check_cert
from tests.console.scenes import NOW

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", REPO / "ansible/README.md", *sorted((REPO / "docs").glob("*.md"))]
TOP_LEVEL = {p.name for p in REPO.iterdir() if p.is_dir() and not p.name.startswith(".")}


def named_files(text: str) -> set[str]:
    """Repository paths written in backquotes or linked: `docs/policy.md`, ../x/y.md."""
    candidates = re.findall(r"`([\w./-]+)`", text) + re.findall(r"\]\(([^)#\s]+)", text)
    return {c for c in candidates
            if c.startswith("../") or ("/" in c and c.split("/")[0] in TOP_LEVEL)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_file_a_document_names_is_in_the_repository(doc: Path) -> None:
    def missing(name: str) -> bool:
        path = ((doc.parent if name.startswith("../") else REPO) / name).resolve()
        return not (path.is_relative_to(REPO) and path.exists())

    assert sorted(filter(missing, named_files(doc.read_text()))) == []


def expiring(kind: str) -> CertInfo:
    return CertInfo(kind=kind, subject=f"CN={kind}", san=(), serial="ab" * 8,
                    not_before=NOW - timedelta(days=300), not_after=NOW + timedelta(days=2),
                    issuer="CN=anchor", owner="api")


@pytest.mark.parametrize("kind", ["issuer", "anchor"])
def test_an_expiring_ca_certificate_hints_at_rotation_with_files_that_exist(kind: str) -> None:
    finding = check_cert(expiring(kind), "api", NOW)
    assert finding.status.value != "ok"
    assert "`vmesh identity rotate`" in finding.hint
    assert sorted(p for p in named_files(finding.hint) if not (REPO / p).exists()) == []
    assert "ansible/rotate-certs.yml" in finding.hint
