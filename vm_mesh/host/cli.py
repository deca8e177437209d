"""Host lifecycle commands: `vmesh join`, `vmesh run`, `vmesh systemd render`."""

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

    join = add_command(commands, "join", "Join the mesh: first certificate, service file, "
                       "then start the proxy (and the app, given after --).")
    join.add_argument("--token", required=True, help="a join token (vmesh identity token create)")
    join.add_argument("--identity", required=True, metavar="URL",
                      help="the identity service, e.g. https://ca.example:8443")
    join.add_argument("--service", required=True, help="the service this host runs")
    join.add_argument("--app-port", required=True, type=int, help="the port the app listens on")
    join.add_argument("--discovery", choices=("mdns", "consul", "static"), default="mdns",
                      help="how proxies find each other (default mdns)")
    join.add_argument("--consul-url", default=None,
                      help="the local Consul agent (default http://127.0.0.1:8500)")
    join.add_argument("--host", default=None,
                      help="the host name the token was made for (default: this machine's)")
    for name in ("inbound", "outbound", "admin"):
        join.add_argument(f"--{name}", default=None, metavar="HOST:PORT",
                          help=f"the proxy's {name} listener (default from DESIGN.md)")
    join.add_argument("--force", action="store_true", help="join again over an existing file")
    join.add_argument("--no-start", action="store_true",
                      help="only certificate and service file; do not start the proxy")
    join.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                      help="optionally the app to run with its proxy (as `vmesh run`)")
    join.set_defaults(handler=_join)


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


def _join(args: argparse.Namespace) -> int:
    import os
    import socket
    import sys

    from vm_mesh.host.join import JoinRequest, join
    from vm_mesh.host.launcher import proxy_argv, systemd_is_pid1

    request = JoinRequest(
        token=args.token, identity_url=args.identity, service=args.service,
        app_port=args.app_port, host=args.host or socket.gethostname(),
        discovery=args.discovery, consul_url=args.consul_url,
        inbound=args.inbound, outbound=args.outbound, admin=args.admin,
    )
    path = join(request, force=args.force)
    print(f"joined as {args.service}; certificate in {paths.state_dir(args.service)}, "
          f"service file {path}", file=sys.stderr, flush=True)
    if args.no_start:
        return 0
    if args.command[1:] if args.command[:1] == ["--"] else args.command:
        args.service = request.service
        return _run(args)
    if systemd_is_pid1():
        return _start_proxy_unit(args.service)
    # no app to run with it: the proxy takes over this process (it drains on SIGTERM)
    argv = proxy_argv(args.service)
    os.execv(argv[0], argv)


def _start_proxy_unit(service: str) -> int:
    """Under systemd the rendered template runs the proxy: enable and start its instance."""
    import shutil
    import subprocess

    from vm_mesh.systemd import PROXY_UNIT

    if not (Path("/etc/systemd/system") / PROXY_UNIT).exists() or not shutil.which("systemctl"):
        raise UserError(f"joined, but {PROXY_UNIT} is not installed; run `vmesh systemd render "
                        f"&& systemctl daemon-reload`, then `systemctl enable --now "
                        f"vmesh-proxy@{service}`")
    unit = f"vmesh-proxy@{service}.service"
    result = subprocess.run(["systemctl", "enable", "--now", unit],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise UserError(f"joined, but systemctl could not start {unit}: "
                        f"{result.stderr.strip() or result.returncode}")
    print(f"started {unit}; logs: journalctl -u {unit} -f")
    return 0
