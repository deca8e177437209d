"""Host lifecycle commands: `vmesh systemd render`, `vmesh run`, `vmesh join`."""

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from vm_mesh import paths
from vm_mesh.cli import add_command
from vm_mesh.errors import UserError


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from vm_mesh.systemd import DEFAULT_DRAIN_S, DEFAULT_USER, DEFAULT_VMESH_BIN

    systemd = add_command(commands, "systemd", "systemd unit files for vmesh.")
    actions = systemd.add_subparsers(dest="systemd_command", metavar="ACTION", required=True)
    render = add_command(actions, "render",
                         "Write vmesh-proxy@.service, vmesh-identity.service, "
                         "vmesh-cert-helper@.service and vmesh-gateway.service.")
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
    run.add_argument("--supervise", action="store_true",
                     help="supervise both as children even where systemd runs (for a unit or "
                     "another process manager that runs `vmesh run` itself)")
    run.add_argument("service", help="the service (its file: /etc/vmesh/services/SERVICE.toml)")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                     help="the app to run, after --")
    run.set_defaults(handler=_run)

    renew = add_command(commands, "renew", "Renew a service's certificate now, e.g. after "
                        "`vmesh identity rotate` (its running proxy loads the new files itself).")
    renew.add_argument("service", help="the service (its file: /etc/vmesh/services/SERVICE.toml)")
    renew.set_defaults(handler=_renew)

    join = add_command(commands, "join", "Join a service on this host to the mesh: write its "
                       "service file, fetch its first certificate, start its proxy.")
    join.add_argument("--token", required=True, help="the one-time join token "
                      "(from `vmesh identity token create` on the CA host); `-`: read it from "
                      "standard input, where no process listing or log shows it")
    join.add_argument("--identity", required=True, metavar="URL",
                      help="the identity service, e.g. https://ca.example:8443")
    join.add_argument("--service", required=True, help="the service this host runs")
    join.add_argument("--app-port", type=int, help="the app's port on loopback "
                      "(required unless --use-service-file)")
    join.add_argument("--use-service-file", action="store_true",
                      help="keep the existing service file (e.g. written by Ansible) instead of "
                      "writing one; only fetch the certificate (and start the proxy)")
    join.add_argument("--host", default=None,
                      help="the host name the token was made for (default: this host's name)")
    join.add_argument("--instance-id", default="", help="default: <service>-<host>")
    join.add_argument("--advertise", default=None,
                      help="the address other hosts reach this proxy on")
    join.add_argument("--inbound", default=None, help="the mTLS listen address (host:port)")
    join.add_argument("--outbound", default=None,
                      help="the app-facing listen address (host:port; several proxies on a host "
                      "need one each)")
    join.add_argument("--admin", default=None, help="the admin API listen address (host:port)")
    join.add_argument("--discovery", default=None, choices=("mdns", "consul", "static"),
                      help="discovery backend of the host, written into mesh.toml when it has no "
                      "[discovery] table yet (default mdns); must match the table otherwise")
    join.add_argument("--consul-url", default=None, metavar="URL",
                      help="with --discovery consul: the local agent (default "
                      "http://127.0.0.1:8500)")
    join.add_argument("--no-start", action="store_true",
                      help="write the file and the certificate, but do not start the proxy")
    join.set_defaults(handler=_join)

    helper = add_command(commands, "cert-helper", "Keep a mesh certificate renewed for a "
                         "program no proxy fronts (Prometheus scraping the proxies, say).")
    helper.add_argument("name", help="the identity: spiffe://<trust domain>/svc/NAME")
    helper.add_argument("--identity", default=None, metavar="URL",
                        help="the identity service, e.g. https://ca.example:8443 (default: "
                        "identity_url of /etc/vmesh/mesh.toml)")
    helper.add_argument("--token", default=os.environ.get("VMESH_JOIN_TOKEN"),
                        help="a one-time join token for NAME (`vmesh identity token create`), "
                        "needed when DIR holds no valid leaf (default: $VMESH_JOIN_TOKEN; "
                        "`-`: read it from standard input)")
    helper.add_argument("--dir", type=Path, default=None, metavar="DIR",
                        help="where cert.pem, key.pem and bundle.pem are kept (default: "
                        "/var/lib/vmesh/NAME); run the helper as the user that reads them")
    helper.add_argument("--host", default=None,
                        help="the host name the token was made for (default: this host's name)")
    helper.add_argument("--once", action="store_true",
                        help="only make sure DIR holds a valid leaf (obtained with --token if "
                        "not), then exit: the running helper renews it")
    helper.set_defaults(handler=_cert_helper)


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
    if systemd_is_pid1() and not args.supervise:
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
    import asyncio
    import socket
    import subprocess

    from identity.client import LeafNotStored, obtain
    from vm_mesh.defaults import LEAF_FILES
    from vm_mesh.host.join import HostFiles, JoinRequest, Snapshot, planned_files
    from vm_mesh.host.launcher import proxy_argv, systemd_is_pid1

    files = HostFiles(())
    token = _token(args.token)
    if args.use_service_file:
        from vm_mesh.config import load_service

        print(f"using {load_service(args.service).path}")
    elif args.app_port is None:
        raise UserError("vmesh join: --app-port is required (or --use-service-file to keep "
                        "an existing service file)")
    else:
        files = planned_files(JoinRequest(args.service, args.app_port, args.identity,
                                          args.instance_id, args.advertise, args.inbound,
                                          args.outbound, args.admin, args.discovery,
                                          args.consul_url))
    host = args.host or socket.gethostname()
    directory = paths.state_dir(args.service)
    before = Snapshot.of([*files.paths, *(directory / name for name in LEAF_FILES)])
    spent = (f"nothing of the join was kept, and the token is spent: ask for a new one "
             f"(`vmesh identity token create --host {host} --services {args.service}` on the "
             "CA host), then join again")
    try:
        with _joining(args.identity):
            leaf = asyncio.run(obtain(args.identity, token, host=host, service=args.service,
                                      directory=directory))
    except LeafNotStored as exc:
        before.restore()
        raise UserError(f"{exc}; {spent}") from None
    except UserError as exc:
        raise UserError(f"{exc}; this host was left as it was", exc.exit_code) from None
    try:
        written = files.write()
    except OSError as exc:  # the leaf is stored, the files that go with it are not
        before.restore()
        raise UserError(f"the identity service issued the leaf of {args.service}, but writing "
                        f"{exc.filename or 'its files'} failed: {exc.strerror or exc}; {spent}"
                        ) from None
    for path in written:
        print(f"wrote {path}")
    until = f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    print(f"certificate for {args.service} valid until {until} in {paths.state_dir(args.service)}")
    if args.no_start:
        print(f"start the proxy with: vmesh proxy run {args.service}")
        return 0
    if systemd_is_pid1():
        subprocess.run(["systemctl", "enable", "--now", f"vmesh-proxy@{args.service}"],
                       check=True, timeout=120)
        print(f"started vmesh-proxy@{args.service}")
        return 0
    print(f"no systemd here: running the proxy of {args.service} in the foreground", flush=True)
    argv = proxy_argv(args.service)
    os.execv(argv[0], argv)


def _token(value: str) -> str:
    """A --token value; `-` is the first line of standard input (Ansible hands it over so)."""
    if value != "-":
        return value
    token = sys.stdin.readline().strip()
    if not token:
        raise UserError("--token -: no token on standard input")
    return token


@contextlib.contextmanager
def _joining(url: str) -> Iterator[None]:
    """Turn the failures of a join (a token traded for a first leaf) into what the user does
    about them."""
    import httpx

    from identity.client import IdentityRefused
    from identity.errors import Rejection

    try:
        yield
    except Rejection as exc:  # the token is not even shaped like one
        raise UserError(f"--token: {exc.reason}: {exc.detail}") from None
    except IdentityRefused as exc:
        raise UserError(f"the identity service at {url} refused the join: {exc} "
                        "(ask for a new token for this host and service)") from None
    except httpx.HTTPError as exc:
        raise UserError(f"cannot reach the identity service at {url}: "
                        f"{exc or type(exc).__name__} (check --identity and the network)") from None


def _cert_helper(args: argparse.Namespace) -> int:
    import asyncio
    import socket

    from identity.pki import identity_of
    from vm_mesh.config import load_mesh_config
    from vm_mesh.host.certhelper import ensure_leaf, run_until_stopped
    from vm_mesh.logs import configure

    url = args.identity or load_mesh_config().identity_url
    if not url:
        raise UserError(f"vmesh cert-helper: no identity service: pass --identity URL or set "
                        f"identity_url in {paths.mesh_config()}")
    directory = args.dir or paths.state_dir(args.name)
    host = args.host or socket.gethostname()
    token = _token(args.token) if args.token else None
    if args.once:
        with _joining(url):
            leaf = asyncio.run(ensure_leaf(url, args.name, directory, token, host)).leaf()
        print(f"{directory}: {identity_of(leaf)}, valid until "
              f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC")
        return 0
    configure()
    with _joining(url):
        return asyncio.run(run_until_stopped(url, args.name, directory, token, host))


def _renew(args: argparse.Namespace) -> int:
    import asyncio

    import httpx

    from identity.client import IdentityRefused, renew
    from identity.pki import new_serial_hex
    from vm_mesh.config import load_service

    config = load_service(args.service).config
    if not config.identity_url:
        raise UserError(f"{paths.service_config(args.service)}: no identity_url to renew from "
                        "(add it, or join again)")
    directory = paths.state_dir(args.service)
    try:
        leaf = asyncio.run(renew(config.identity_url, directory))
    except FileNotFoundError as exc:
        raise UserError(f"{args.service} has no certificate to renew ({exc.filename}); "
                        "join first: vmesh join") from None
    except IdentityRefused as exc:
        raise UserError(f"the identity service at {config.identity_url} refused to renew "
                        f"{args.service}: {exc}") from None
    except httpx.HTTPError as exc:
        raise UserError(f"cannot reach the identity service at {config.identity_url}: "
                        f"{exc or type(exc).__name__}") from None
    print(f"renewed {args.service}: serial {new_serial_hex(leaf)} from "
          f"{leaf.issuer.rfc4514_string()}, valid until "
          f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, in {directory}")
    return 0
