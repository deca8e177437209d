"""`vmesh config check KIND FILE`: validate a config file as the process that reads it would,
before it is put in place (Ansible's `validate:`, a review, a hand edit)."""

import argparse
from pathlib import Path

from vm_mesh.cli import add_command
from vm_mesh.config import GatewayConfig, MeshConfig, ServiceConfig, check_config_file

# What each kind of file is read as, and where it lives.
KINDS: dict[str, tuple[type, str]] = {
    "mesh": (MeshConfig, "etc/vmesh/mesh.toml, read by every proxy of the host"),
    "service": (ServiceConfig, "etc/vmesh/services/SERVICE.toml, read by its proxy"),
    "gateway": (GatewayConfig, "etc/vmesh/gateway.toml, read by `vmesh gateway run`"),
}


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `vmesh config` and its subcommand `check`."""
    parser = add_command(commands, "config", "Check vmesh config files before using them.")
    sub = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    check = add_command(sub, "check", "Validate one config file as the process that reads it "
                        "would; print every error as file:line: reason (exit code 1).")
    check.add_argument("kind", choices=list(KINDS),
                       help="; ".join(f"{kind}: {what}" for kind, (_, what) in KINDS.items()))
    check.add_argument("file", type=Path, help="the file, under any name (a new version of it)")
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    check_config_file(args.file, KINDS[args.kind][0])
    print(f"{args.file}: a valid {args.kind} config")
    return 0
