"""Start a demo mesh on this machine: CA, three services with two instances each, traffic.

Each instance runs as its own "host" (its own VMESH_ROOT under the demo
directory), joins the mesh with a one-time token like a real VM, and finds
the others over mDNS on loopback. `web` calls `api`, which calls `store`;
`api-2` is slow, `api-1` fails 10 % of requests and `store-2` 20 %, so the
console has something to show. Each run has a trust domain of its own, so two
demos on one machine never route to each other's instances.
"""

import asyncio
import contextlib
import fcntl
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from identity.client import obtain
from vm_mesh.errors import UserError
from vm_mesh.files import write_file
from vm_mesh.paths import check_socket_path


@dataclass(frozen=True, slots=True)
class DemoInstance:
    service: str
    instance: str
    calls: str | None = None
    delay: float = 0.0
    fail_rate: float = 0.0


INSTANCES = (
    DemoInstance("web", "web-1", calls="api"),
    DemoInstance("web", "web-2", calls="api"),
    DemoInstance("api", "api-1", calls="store", delay=0.01, fail_rate=0.1),  # the failing one
    DemoInstance("api", "api-2", calls="store", delay=0.25),  # the slow one
    DemoInstance("store", "store-1", delay=0.005),
    DemoInstance("store", "store-2", delay=0.005, fail_rate=0.2),  # the flaky one
)
MARKER = ".vmesh-demo"
PATHS = ("/", "/items/1", "/items/2", "/cart", "/checkout")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Demo:
    """The processes of one demo run, and how to stop them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs = directory / "logs"
        self.console_root = directory / "console"
        self.web_outbound = ""
        self.trust_domain = f"demo-{secrets.token_hex(3)}.local"
        self._marker: IO[bytes] | None = None  # locked for as long as this demo runs

    def _log(self, name: str) -> Path:
        """Where the process `name` of this run logs."""
        return self.logs / f"{name}.log"

    def _spawn(self, name: str, args: list[str], root: Path) -> subprocess.Popen[bytes]:
        log = self._log(name).open("ab")
        process = subprocess.Popen(
            [sys.executable, *args],
            env={**os.environ, "VMESH_ROOT": str(root)},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def _vmesh(self, root: Path, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "vm_mesh", *args],
            capture_output=True,
            text=True,
            env={**os.environ, "VMESH_ROOT": str(root)},
            timeout=60,
        )
        if result.returncode != 0:
            raise UserError(f"demo: vmesh {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def _claim(self) -> None:
        """Make the directory this run's: an earlier demo's state is removed, unless that
        demo still runs (it holds a lock on the marker file until it ends)."""
        marker = self.directory / MARKER
        if marker.exists():
            with _locked(marker):
                shutil.rmtree(self.directory)  # an earlier demo's state: start afresh
        elif self.directory.exists() and any(self.directory.iterdir()):
            raise UserError(f"{self.directory} is not empty; remove it or pass another --dir")
        self.logs.mkdir(parents=True)
        self._marker = _locked(marker)

    def _check_directory(self) -> None:
        """Refuse a --dir so deep that an instance's admin socket would not fit a unix socket's
        path, before anything starts."""
        sockets = [self.directory / "hosts" / spec.instance / "run/vmesh" / f"{spec.service}.sock"
                   for spec in INSTANCES]
        check_socket_path(max(sockets, key=lambda path: len(os.fsencode(path))),
                          "pass a shorter --dir")

    def start(self) -> None:
        self._check_directory()
        self._claim()
        ca_root = self.directory / "ca"
        self._vmesh(ca_root, "identity", "init", "--trust-domain", self.trust_domain)
        identity_port = _free_port()
        identity_url = f"https://127.0.0.1:{identity_port}"
        identity = self._spawn(
            "identity",
            ["-m", "vm_mesh", "identity", "serve", "--listen", f"127.0.0.1:{identity_port}"],
            ca_root,
        )
        _wait_for(lambda: _identity_up(identity_url), "the identity service", identity,
                  self._log("identity"))
        print(f"identity service on {identity_url}, trust domain {self.trust_domain}")
        sockets = self.console_root / "run" / "vmesh"
        sockets.mkdir(parents=True)
        for spec in INSTANCES:
            self._start_instance(spec, ca_root, identity_url, sockets)
        self._set_up_console_host(identity_url)
        print(f"{len(INSTANCES)} instances ready; logs in {self.logs}")

    def _set_up_console_host(self, identity_url: str) -> None:
        """The console's root is an operator's host: it knows the mesh's trust domain, its
        identity service and trust bundle, so `vmesh check` there checks everything."""
        write_file(
            self.console_root / "etc/vmesh/mesh.toml",
            f'trust_domain = "{self.trust_domain}"\nidentity_url = "{identity_url}"\n'.encode(),
        )
        first = INSTANCES[0]
        bundle = self.directory / "hosts" / first.instance / "var/lib/vmesh" / first.service
        write_file(self.console_root / "var/lib/vmesh/operator/bundle.pem",
                   (bundle / "bundle.pem").read_bytes())

    def _start_instance(
        self, spec: DemoInstance, ca_root: Path, identity_url: str, sockets: Path
    ) -> None:
        root = self.directory / "hosts" / spec.instance
        app_port, outbound_port = _free_port(), _free_port()
        token = self._vmesh(
            ca_root,
            "identity",
            "token",
            "create",
            "--host",
            spec.instance,
            "--services",
            spec.service,
            "--ttl",
            "10m",
        )
        asyncio.run(
            obtain(
                identity_url,
                token,
                host=spec.instance,
                service=spec.service,
                directory=root / "var/lib/vmesh" / spec.service,
            )
        )
        config = root / "etc/vmesh/services" / f"{spec.service}.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f'service = "{spec.service}"\ninstance_id = "{spec.instance}"\n'
            f'app_port = {app_port}\nidentity_url = "{identity_url}"\n'
            f'trust_domain = "{self.trust_domain}"\n'
            '[listen]\ninbound = "127.0.0.1:0"\nadmin = "127.0.0.1:0"\n'
            f'outbound = "127.0.0.1:{outbound_port}"\n'
        )
        # every "host" of the demo finds the others over mDNS on loopback
        (root / "etc/vmesh/mesh.toml").write_text(
            '[discovery]\nbackend = "mdns"\ninterfaces = ["127.0.0.1"]\n'
        )
        app = [
            "-m",
            "vm_mesh.demo.app",
            "--service",
            spec.service,
            "--instance",
            spec.instance,
            "--port",
            str(app_port),
            "--outbound",
            f"127.0.0.1:{outbound_port}",
            "--delay",
            str(spec.delay),
            "--fail-rate",
            str(spec.fail_rate),
        ]
        if spec.calls:
            app += ["--calls", spec.calls]
        self._spawn(f"{spec.instance}-app", app, root)
        proxy = self._spawn(f"{spec.instance}-proxy",
                            ["-m", "vm_mesh", "proxy", "run", spec.service], root)
        admin_socket = root / "run/vmesh" / f"{spec.service}.sock"
        _wait_for(lambda: _ready(admin_socket), f"the proxy of {spec.instance}", proxy,
                  self._log(f"{spec.instance}-proxy"))
        (sockets / f"{spec.instance}.sock").symlink_to(admin_socket)
        if spec.instance == "web-1":
            self.web_outbound = f"127.0.0.1:{outbound_port}"
        print(f"  {spec.instance:<8} app :{app_port}  outbound :{outbound_port}  ready")

    def stop(self) -> None:
        if self._marker is None:
            return  # the directory never became this run's: nothing in it is ours to stop
        for process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        # the proxies removed their admin sockets; the console's links to them go too
        for link in (self.console_root / "run" / "vmesh").glob("*.sock"):
            link.unlink(missing_ok=True)
        self._marker.close()  # the directory is free for the next demo


def _locked(marker: Path) -> IO[bytes]:
    """`marker`, created if need be, open and locked; UserError while another demo holds it."""
    handle = marker.open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserError(f"{marker.parent} is in use by a demo that is running; stop that one "
                        "(q or Ctrl-C) or pass another --dir") from None
    return handle


def _wait_for(predicate: Callable[[], bool], what: str, process: subprocess.Popen[bytes],
              log: Path, within: float = 30.0) -> None:
    """Wait until `predicate` holds for `what`, which `process` (logging to `log`) brings up;
    UserError as soon as the process exits, with the last line it logged, or after `within`
    seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if process.poll() is not None:
            lines = log.read_text(errors="replace").strip().splitlines() or ["(nothing)"]
            raise UserError(f"demo: {what} exited (code {process.returncode}) saying "
                            f"{lines[-1]!r}; its log: {log}")
        if time.monotonic() > deadline:
            raise UserError(f"demo: {what} did not come up within {within:.0f}s; its log: {log}")
        time.sleep(0.1)


def _identity_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", verify=False, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _ready(admin_socket: Path) -> bool:
    if not admin_socket.exists():
        return False
    transport = httpx.HTTPTransport(uds=str(admin_socket))
    try:
        with httpx.Client(transport=transport, base_url="http://admin", timeout=1) as client:
            return client.get("/ready").status_code == 200
    except httpx.HTTPError:
        return False


def chain(status: int, body: object) -> str:
    """How far one request to `web` got: `web 200 > api 200 > store 503`."""
    hops = [f"web {status}"]
    hop = body.get("downstream") if isinstance(body, dict) else None
    while isinstance(hop, dict):
        hops.append(f"{hop.get('service')} {hop.get('status', 'error')}")
        hop = hop.get("downstream")
    return " > ".join(hops)


async def generate_traffic(
    outbound: str,
    rate: float,
    duration: float | None,
    counts: dict[str, int] | None = None,
    chains: dict[str, int] | None = None,
) -> dict[str, int]:
    """Send about `rate` requests per second to `web` through a proxy; count `web`'s statuses
    in `counts` and how far each request got in `chains` (both filled as answers come, so
    they hold what was seen when Ctrl-C ends the run); returns `counts`."""
    counts = {} if counts is None else counts
    chains = {} if chains is None else chains
    deadline = time.monotonic() + duration if duration else None
    async with httpx.AsyncClient(timeout=10) as client:
        while deadline is None or time.monotonic() < deadline:
            started = time.monotonic()
            try:
                response = await client.get(
                    f"http://{outbound}{random.choice(PATHS)}", headers={"host": "web"}
                )
                key = str(response.status_code)
                try:
                    path = chain(response.status_code, response.json())
                except ValueError:
                    path = chain(response.status_code, None)
            except httpx.HTTPError as exc:
                key = path = type(exc).__name__
            counts[key] = counts.get(key, 0) + 1
            chains[path] = chains.get(path, 0) + 1
            await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))
    return counts


def run(directory: Path, *, console: bool, duration: float | None, rate: float) -> int:
    """The whole demo: start, send traffic, open the console (or wait), then stop."""
    demo = Demo(directory)

    def stop_on_signal(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through `finally`, which stops every process

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop_on_signal)
    try:
        demo.start()
        if console:
            traffic = subprocess.Popen(
                [sys.executable, "-m", "vm_mesh.demo.traffic", demo.web_outbound, str(rate)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            demo.processes.append(traffic)
            env = {**os.environ, "VMESH_ROOT": str(demo.console_root)}
            return subprocess.run(
                [sys.executable, "-m", "vm_mesh", "console"], env=env, check=False
            ).returncode
        counts: dict[str, int] = {}
        chains: dict[str, int] = {}
        try:
            print(f"sending ~{rate:g} requests/s to web; Ctrl-C to stop", flush=True)
            asyncio.run(generate_traffic(demo.web_outbound, rate, duration, counts, chains))
        except KeyboardInterrupt:  # from here on Ctrl-C is a clean stop
            interrupted = True
        else:
            interrupted = False
        print("responses:", json.dumps(counts, sort_keys=True))
        print("through the tiers:", json.dumps(chains, sort_keys=True))
        if not interrupted and not counts.get("200"):
            print(f"demo: no request was answered with 200; see the logs in {demo.logs}",
                  file=sys.stderr)
            return 1
        return 0
    finally:
        demo.stop()
