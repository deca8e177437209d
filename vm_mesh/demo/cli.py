"""`vmesh demo`: a local mesh of several services on loopback over mDNS, plus the console."""

import argparse
from pathlib import Path

from vm_mesh.cli import add_command
from vm_mesh.errors import UserError


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `vmesh demo`."""
    parser = add_command(
        commands,
        "demo",
        "Start a demo mesh on this machine (CA, web -> api -> store, two instances each, "
        "one slow, one flaky) and open the console.",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("demo-state"),
        help="where the demo keeps its hosts, certificates and logs "
        "(default: %(default)s, must be empty)",
    )
    parser.add_argument(
        "--no-console",
        action="store_true",
        help="do not open the console; send traffic until Ctrl-C or --duration",
    )
    parser.add_argument("--duration", type=float, help="seconds of traffic with --no-console")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second to web")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from vm_mesh.demo.runner import run

    if not args.rate > 0:  # also NaN
        raise UserError(f"--rate {args.rate:g}: must be more than 0 requests per second")
    return run(
        args.dir.resolve(), console=not args.no_console, duration=args.duration, rate=args.rate
    )
