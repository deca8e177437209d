"""The `vmesh` command: one entry point; each package contributes its subcommands.

A package exposes `register(subparsers)` in its `cli` module and sets a `handler`
default on each subcommand it adds. Handlers import heavy modules lazily so that
`vmesh --help` stays fast. Failures a user can act on are raised as `UserError`
and printed as one line.
"""

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from vm_mesh import __version__
from vm_mesh.errors import UserError

# Modules that contribute subcommands, in the order `vmesh --help` lists them.
COMMAND_MODULES = (
    "identity.cli",
    "proxy.cli",
    "vm_mesh.policy.cli",
    "vm_mesh.config_cli",
    "console.cli",
    "vm_mesh.demo.cli",
    "vm_mesh.host.cli",
)


def build_parser() -> argparse.ArgumentParser:
    """The complete argument parser with every package's subcommands."""
    parser = argparse.ArgumentParser(
        prog="vmesh",
        description="vmesh: a service mesh for bare-metal and VM hosts "
        "(mTLS sidecars, mDNS/Consul discovery, a terminal console).",
    )
    parser.add_argument("--version", action="version", version=f"vmesh {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `vmesh` command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except UserError as exc:
        print(f"vmesh: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`vmesh tap | head`): stop quietly, as other Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"vmesh: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: one line for the user, the traceback on request
        if os.environ.get("VMESH_DEBUG"):
            logging.getLogger("vmesh").exception("unexpected error")
        print(
            f"vmesh: internal error: {type(exc).__name__}: {exc} "
            "(set VMESH_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 70


def add_command(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str, summary: str
) -> argparse.ArgumentParser:
    """Add a subcommand whose `--help` and listing both show `summary`."""
    return commands.add_parser(name, help=summary, description=summary)
