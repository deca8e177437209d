"""`vmesh systemd ...`: host lifecycle commands."""

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
