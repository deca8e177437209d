"""`vmesh identity ...`: the certificate authority and identity service commands."""

import argparse

from vm_mesh.cli import add_command


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `vmesh identity` and its subcommands."""
    parser = add_command(commands, "identity", "Run the mesh's certificate authority.")
    parser.add_subparsers(dest="identity_command", metavar="SUBCOMMAND", required=True)
