"""Role vmesh installs every host's vmesh with its files/constraints.txt: every library vmesh
needs at run time is pinned there, each at the version installed in the venv the tests run
in (`make constraints` writes it), so a host set up later gets the tested libraries."""

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts.pin_dependencies import constraints_text, read_constraints, runtime_pins

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "ansible/roles/vmesh/files/constraints.txt"


def test_every_dependency_of_pyproject_is_pinned_at_the_tested_version() -> None:
    pins = read_constraints(CONSTRAINTS.read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        name = canonicalize_name(Requirement(line).name)
        assert name in pins, f"{name} is not pinned in {CONSTRAINTS.name}: run make constraints"
    for name, version in pins.items():
        assert metadata.version(name) == version, f"{name}: run make constraints"


def test_the_libraries_those_need_are_pinned_too() -> None:
    assert CONSTRAINTS.read_text() == constraints_text(runtime_pins()), "run make constraints"
