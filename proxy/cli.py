"""`vmesh proxy ...`: run the sidecar proxy of a service."""

import argparse
from pathlib import Path

from vm_mesh.cli import add_command


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `vmesh proxy` and its subcommands."""
    parser = add_command(commands, "proxy", "Run a service's sidecar proxy.")
    sub = parser.add_subparsers(dest="proxy_command", metavar="SUBCOMMAND", required=True)
    run = add_command(
        sub, "run", "Run the proxy of SERVICE (config: /etc/vmesh/services/SERVICE.toml)."
    )
    run.add_argument("service")
    run.set_defaults(handler=_run)

    gateway = add_command(
        commands, "gateway",
        "Run this site's mesh gateway: other sites' mTLS connections, routed by SNI.",
    )
    gateway_sub = gateway.add_subparsers(dest="gateway_command", metavar="SUBCOMMAND",
                                         required=True)
    gateway_run = add_command(
        gateway_sub, "run",
        "Run the gateway (config: /etc/vmesh/gateway.toml; discovery: mesh.toml's Consul).",
    )
    gateway_run.add_argument("--config", type=Path, default=None,
                             help="the gateway's file (default: /etc/vmesh/gateway.toml)")
    gateway_run.set_defaults(handler=_run_gateway)


def _run(args: argparse.Namespace) -> int:
    import uvloop

    from proxy.heap import keep_read_buffers_on_heap
    from proxy.server import run
    from vm_mesh import logs
    from vm_mesh.config import load_service

    loaded = load_service(args.service)
    logs.configure()
    keep_read_buffers_on_heap()
    uvloop.run(run(loaded))
    return 0


def _run_gateway(args: argparse.Namespace) -> int:
    import uvloop

    from proxy.gateway_run import run
    from vm_mesh import logs
    from vm_mesh.config import load_gateway_config

    config = load_gateway_config(args.config)
    logs.configure()
    uvloop.run(run(config))
    return 0
