"""Host lifecycle commands: `vmesh systemd render`, `vmesh run`."""

import argparse
from pathlib import Path

from vm_mesh import paths
from vm_mesh.cli import add_command
from vm_mesh.errors import UserError


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from vm_mesh.systemd import DEFAULT_DRAIN_S, DEFAULT_USER, DEFAULT_VMESH_BIN

    systemd = add_command(commands, "systemd", "systemd unit files for vmesh.")
    actions = systemd.add_subparsers(dest="systemd_command", metavar="ACTION", required=True)
    render = add_command(actions, "render",
                         "Write vmesh-proxy@.service and vmesh-identity.service.")
    render.add_argument("--output", type=Path, default=None,
                        help="directory to write into (default: /etc/systemd/system)")
    render.add_argument("--vmesh-bin", default=DEFAULT_VMESH_BIN,
                        help=f"the vmesh executable the units start (default {DEFAULT_VMESH_BIN})")
    render.add_argument("--user", default=DEFAULT_USER,
                        help=f"the dedicated user the units run as (default {DEFAULT_USER})")
    render.add_argument("--drain", type=int, default=DEFAULT_DRAIN_S, metavar="SECONDS",
                        help="the proxies' drain time; systemd waits a little longer on stop "
                        f"(default {DEFAULT_DRAIN_S})")
    render.set_defaults(handler=_render)

    run = add_command(commands, "run", "Run an app and its proxy together "
                      "(transient systemd units, or supervised children without systemd).")
    run.add_argument("service", help="the service (its file: /etc/vmesh/services/SERVICE.toml)")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                     help="the app to run, after --")
    run.set_defaults(handler=_run)


def _render(args: argparse.Namespace) -> int:
    from vm_mesh.systemd import UnitSettings, write_units

    if args.drain < 1:
        raise UserError(f"--drain {args.drain}: must be at least 1 second")
    output = args.output or paths.root() / "etc" / "systemd" / "system"
    written = write_units(output, UnitSettings(args.vmesh_bin, args.user, args.drain))
    for path in written:
        print(path)
    print("then: systemctl daemon-reload && systemctl enable --now vmesh-proxy@<service>")
    return 0


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import shutil
    import subprocess

    from vm_mesh.config import load_service
    from vm_mesh.host.launcher import Supervisor, systemd_is_pid1, transient_units
    from vm_mesh.logs import configure

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UserError(f"vmesh run {args.service}: no app command (usage: "
                        f"vmesh run {args.service} -- <command> [args...])")
    drain = load_service(args.service).config.timeouts.drain
    if systemd_is_pid1():
        systemd_run = shutil.which("systemd-run")
        if systemd_run is None:
            raise UserError("systemd is running but systemd-run is missing (install systemd)")
        for argv in transient_units(args.service, command, drain, systemd_run):
            subprocess.run(argv, check=True, timeout=60)
        print(f"started vmesh-app-{args.service} and vmesh-proxy-{args.service}; "
              f"logs: journalctl -u 'vmesh-*-{args.service}' -f; "
              f"stop (proxy drains first): systemctl stop vmesh-app-{args.service}")
        return 0
    configure()
    return asyncio.run(Supervisor(args.service, command, drain).run())
