"""Where policy documents are found, and how a problem in one is reported.

Kept apart from the loader so that a proxy with no policy document never
imports the YAML parser or builds the document models' validators.
"""

from dataclasses import dataclass
from pathlib import Path

from vm_mesh import paths

CONSUL_PREFIX = "consul:"  # what the name of a document from Consul KV begins with


@dataclass(frozen=True, slots=True)
class PolicyError:
    """One problem in a policy file, with a stable machine-readable `code`."""

    file: str
    line: int
    reason: str
    code: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


class PolicyInvalid(Exception):
    """The policy files do not load; `errors` lists every problem found."""

    def __init__(self, errors: list[PolicyError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def policy_files(directory: Path | None = None) -> list[Path]:
    """The policy files of a directory (default `paths.policy_dir()`), in load order. A
    symlink that leads nowhere is listed too: reading it fails, so the policy is refused
    rather than loaded without that file's rules."""
    directory = directory or paths.policy_dir()
    if not directory.is_dir():
        return []
    return sorted(
        p for p in directory.glob("*.yaml") if p.is_file() or (p.is_symlink() and not p.exists())
    )
