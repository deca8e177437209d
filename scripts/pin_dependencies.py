"""Write the pip constraints file that pins vmesh's runtime dependencies (all of them, each
dependency's own included) to the versions installed in this Python environment: run it
with the venv the release was tested in (`make constraints`); role `vmesh` installs every
host's vmesh with it (ansible/roles/vmesh/files/constraints.txt), so a host set up later
gets the same libraries as the tested one, not the newest ones pip finds that day."""

import sys
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HEADER = ("# vmesh's runtime dependencies at the versions it was tested with\n"
          "# (written by scripts/pin_dependencies.py from the tested venv: make constraints)\n")


def runtime_pins(project: str = "vmesh") -> dict[str, str]:
    """Every distribution `project` needs at run time in this environment (its extras and
    dependencies whose markers do not apply here left out), by canonical name: its version."""
    environment = {**default_environment(), "extra": ""}
    pins: dict[str, str] = {}
    todo = [project]
    while todo:
        distribution = metadata.distribution(todo.pop())
        for line in distribution.requires or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            name = canonicalize_name(requirement.name)
            if name not in pins:
                pins[name] = metadata.version(requirement.name)
                todo.append(requirement.name)
    return pins


def read_constraints(text: str) -> dict[str, str]:
    """The pins of a constraints file `constraints_text` wrote: canonical name: version."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return {name: version for name, _, version in (line.partition("==") for line in lines)}


def constraints_text(pins: dict[str, str]) -> str:
    """The constraints file of `pins`: one `name==version` a line, sorted."""
    return HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


if __name__ == "__main__":
    sys.stdout.write(constraints_text(runtime_pins()))
