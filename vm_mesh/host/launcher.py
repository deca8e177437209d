"""`vmesh run <service> -- <command>`: an app and its proxy, started together, stopped in order.

Where systemd is PID 1 both become transient units (`systemd-run`), so they
get the same restart policy, journald logging and drain-aware stop as the
rendered units. Elsewhere (containers, CI) this process supervises both as
children: their output goes to ours unchanged, a child that fails is
restarted after a delay that doubles with each recent failure (at most
`START_LIMIT_BURST` times in `START_LIMIT_INTERVAL_S`, as the units do), and
on SIGTERM/SIGINT the proxy drains first (it leaves discovery and finishes
in-flight requests), then the app is stopped.
"""

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vm_mesh.systemd import STOP_MARGIN_S

log = logging.getLogger("vmesh.run")

START_LIMIT_BURST = 5
START_LIMIT_INTERVAL_S = 60.0
RESTART_DELAY_S = 0.5  # after the first failure; doubles with each further one
RESTART_DELAY_MAX_S = 30.0
APP_STOP_TIMEOUT_S = 10.0


def systemd_is_pid1() -> bool:
    """True when the host runs systemd as its init (the test `sd_booted()` uses)."""
    return Path("/run/systemd/system").is_dir()


def proxy_argv(service: str) -> list[str]:
    """This installation's `vmesh proxy run <service>`."""
    return [sys.executable, "-m", "vm_mesh", "proxy", "run", service]


def transient_units(
    service: str, app: Sequence[str], drain_s: float, systemd_run: str = "systemd-run"
) -> list[list[str]]:
    """The `systemd-run` commands for the app and its proxy (in start order)."""
    common = [
        systemd_run, "--collect", "--property=Restart=on-failure",
        f"--property=StartLimitBurst={START_LIMIT_BURST}",
        f"--property=StartLimitIntervalSec={int(START_LIMIT_INTERVAL_S)}s",
        "--property=KillSignal=SIGTERM",
        f"--setenv=VMESH_ROOT={os.environ.get('VMESH_ROOT', '/')}",
    ]
    app_unit = [*common, f"--unit=vmesh-app-{service}",
                f"--property=TimeoutStopSec={int(APP_STOP_TIMEOUT_S)}s",
                f"--working-directory={Path.cwd()}",
                "--", *app]
    # the proxy is bound to the app and ordered after it, so stopping the app's unit stops
    # the proxy first (drain: leave discovery, finish in-flight requests), then the app
    proxy = [*common, f"--unit=vmesh-proxy-{service}",
             f"--property=TimeoutStopSec={int(drain_s) + STOP_MARGIN_S}s",
             "--property=ExecReload=/bin/kill -HUP $MAINPID",
             f"--property=BindsTo=vmesh-app-{service}.service",
             f"--property=After=vmesh-app-{service}.service",
             "--", *proxy_argv(service)]
    return [app_unit, proxy]


@dataclass
class Child:
    """One supervised process and its restart history."""

    name: str
    argv: list[str]
    stop_timeout_s: float
    process: asyncio.subprocess.Process | None = None
    starts: deque[float] = field(default_factory=deque)

    def __repr__(self) -> str:
        state = "stopped" if self.process is None or self.process.returncode is not None \
            else "running"
        pid = self.process.pid if self.process else None
        return f"<Child {self.name} {state} pid={pid} starts={len(self.starts)}>"

    def may_restart(self, now: float) -> bool:
        """False once it failed `START_LIMIT_BURST` times within the start-limit interval."""
        while self.starts and now - self.starts[0] > START_LIMIT_INTERVAL_S:
            self.starts.popleft()
        return len(self.starts) < START_LIMIT_BURST

    def restart_delay(self) -> float:
        """How long to wait before the next start: doubles with each recent failure (capped)."""
        failures = max(len(self.starts), 1)
        return min(RESTART_DELAY_S * 2 ** (failures - 1), RESTART_DELAY_MAX_S)

    async def start(self) -> None:
        self.starts.append(time.monotonic())
        # its own process group: a terminal's Ctrl-C reaches us only, so we choose the order
        self.process = await asyncio.create_subprocess_exec(*self.argv, start_new_session=True)
        log.info("started", extra={"child": self.name, "pid": self.process.pid})

    async def stop(self) -> int | None:
        """SIGTERM, wait up to its stop timeout, then SIGKILL; returns the exit code."""
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.stop_timeout_s)
            except TimeoutError:
                log.warning("did not stop in time; killing",
                            extra={"child": self.name, "pid": process.pid,
                                   "timeout_s": self.stop_timeout_s})
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        log.info("stopped", extra={"child": self.name, "pid": process.pid,
                                   "exit_code": process.returncode})
        return process.returncode


class Supervisor:
    """Runs the proxy and the app until a signal, the app's exit, or too many failures."""

    def __init__(self, service: str, app: Sequence[str], drain_s: float) -> None:
        self.service = service
        self.proxy = Child("proxy", proxy_argv(service), drain_s + STOP_MARGIN_S)
        self.app = Child("app", list(app), APP_STOP_TIMEOUT_S)
        self._stop = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        try:
            await self.proxy.start()
            await self.app.start()
            return await self._supervise()
        finally:
            await self.proxy.stop()  # the proxy drains while the app still answers
            await self.app.stop()

    def _reload(self) -> None:
        if self.proxy.process is not None and self.proxy.process.returncode is None:
            self.proxy.process.send_signal(signal.SIGHUP)

    async def _supervise(self) -> int:
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            while True:
                waits = {asyncio.ensure_future(c.process.wait()): c  # type: ignore[union-attr]
                         for c in (self.proxy, self.app)}
                done, _ = await asyncio.wait({stop, *waits}, return_when=asyncio.FIRST_COMPLETED)
                for task in waits:
                    task.cancel()
                if stop in done:
                    log.info("stopping: proxy drains first, then the app",
                             extra={"service": self.service})
                    return 0
                for task in done:
                    child = waits[task]
                    code = task.result()
                    if child is self.app and code == 0:
                        log.info("the app exited; stopping its proxy",
                                 extra={"service": self.service})
                        return 0
                    if not child.may_restart(time.monotonic()):
                        log.error("failed too often; giving up",
                                  extra={"child": child.name, "exit_code": code,
                                         "limit": START_LIMIT_BURST,
                                         "interval_s": START_LIMIT_INTERVAL_S})
                        return code or 1
                    delay = child.restart_delay()
                    log.warning("exited; restarting",
                                extra={"child": child.name, "exit_code": code,
                                       "restart_in_s": delay})
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(stop), delay)
                    if self._stop.is_set():
                        return 0
                    await child.start()
        finally:
            stop.cancel()
