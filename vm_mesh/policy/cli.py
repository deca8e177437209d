"""`vmesh policy ...`: check traffic policy files before shipping them."""

import argparse
from collections import Counter
from pathlib import Path

from vm_mesh.cli import add_command
from vm_mesh.errors import UserError


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `vmesh policy` and its subcommands."""
    parser = add_command(commands, "policy", "Check traffic policy files (routes, authz, ...).")
    sub = parser.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)
    check = add_command(
        sub, "check", "Validate policy files; print every error as file:line: reason."
    )
    check.add_argument(
        "files",
        nargs="*",
        type=Path,
        help="policy files or directories (default: every *.yaml in the policy directory)",
    )
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    from vm_mesh import paths
    from vm_mesh.policy.loader import PolicyInvalid, load_files, policy_files

    files: list[Path] = []
    for given in args.files or [paths.policy_dir()]:
        files.extend(policy_files(given) if given.is_dir() else [given])
    try:
        policy = load_files(files)
    except PolicyInvalid as exc:
        for error in exc.errors:
            print(error)
        count = len(exc.errors)
        raise UserError(f"policy check failed: {count} error{'s' * (count != 1)}") from None
    kinds = Counter(item.doc.kind for item in policy.documents)
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "no documents"
    services = ", ".join(policy.services()) or "none"
    count = len(files)
    print(f"policy OK: {count} file{'s' * (count != 1)}, {summary}; services: {services}")
    return 0
