"""`vmesh run <service> -- <command>`: an app and its proxy, started together, stopped in order.

Where systemd is PID 1 both become transient units (`systemd-run`), so they
get the same restart policy, journald logging and drain-aware stop as the
rendered units. Elsewhere, or with `--supervise` (what the Ansible roles run, under either),
this process supervises both as children: their output goes to ours
unchanged, a child that fails is restarted after a delay that doubles with
each recent failure (at most `START_LIMIT_BURST` times in
`START_LIMIT_INTERVAL_S`, as the units do), and on SIGTERM/SIGINT the proxy
drains first (it leaves discovery and finishes in-flight requests), then the
app is stopped.

The supervisor keeps a copy of the proxy's listening sockets
(`proxy.handover`), so the next proxy it starts accepts on the same sockets:
SIGUSR2 hands the proxy over to a new process (the installed version) while
the app keeps running, then the supervisor re-executes itself with the
installed code too (`vm_mesh.host.reexec`); SIGUSR1 makes the proxy leave
discovery first (an upgrade's drain), SIGTTIN join it again (as a failed handover does
by itself); SIGHUP reloads it.
"""

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy.handover import LISTEN_FDS_ENV, SUPERVISOR_FD_ENV, receive_ready
from vm_mesh import __version__, paths
from vm_mesh.backoff import doubled
from vm_mesh.files import write_file
from vm_mesh.host.reexec import (
    SUPERVISOR_SIGNALS,
    AdoptedProcess,
    ChildState,
    ResumeState,
    preflight,
    reexec,
    take_resume_state,
)
from vm_mesh.systemd import STOP_MARGIN_S

log = logging.getLogger("vmesh.run")

START_LIMIT_BURST = 5
START_LIMIT_INTERVAL_S = 60.0
RESTART_DELAY_S = 0.5  # after the first failure; doubles with each further one
RESTART_DELAY_MAX_S = 30.0
APP_STOP_TIMEOUT_S = 10.0
HANDOVER_READY_TIMEOUT_S = 30.0  # for the new proxy to be ready before the handover is given up


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
    process: asyncio.subprocess.Process | AdoptedProcess | None = None
    starts: deque[float] = field(default_factory=deque)
    ready: "asyncio.Future[bool] | None" = None  # a proxy's: told the supervisor it is ready

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
        return doubled(RESTART_DELAY_S, RESTART_DELAY_MAX_S, failures - 1)

    async def start(self, env: dict[str, str] | None = None,
                    pass_fds: Sequence[int] = ()) -> None:
        self.starts.append(time.monotonic())
        # its own process group: a terminal's Ctrl-C reaches us only, so we choose the order
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, start_new_session=True, env=env, pass_fds=pass_fds)
        log.info("started", extra={"child": self.name, "pid": self.process.pid})

    def send(self, signum: int) -> None:
        """Send `signum` if it runs."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    async def stop(self, signum: int = signal.SIGTERM) -> int | None:
        """`signum`, wait up to its stop timeout, then SIGKILL; returns the exit code. Both go
        to the child's whole process group (it leads its own session), so what a wrapper
        script started stops with it."""
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signum)
            try:
                await asyncio.wait_for(process.wait(), self.stop_timeout_s)
            except TimeoutError:
                log.warning("did not stop in time; killing",
                            extra={"child": self.name, "pid": process.pid,
                                   "timeout_s": self.stop_timeout_s})
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
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
        self.listeners: dict[str, socket.socket] = {}  # copies of the ready proxy's listeners
        self._stop = asyncio.Event()
        self._handover = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self.proxy.send(signal.SIGHUP))
        loop.add_signal_handler(signal.SIGUSR1, lambda: self.proxy.send(signal.SIGUSR1))
        loop.add_signal_handler(signal.SIGTTIN, lambda: self.proxy.send(signal.SIGTTIN))
        loop.add_signal_handler(signal.SIGUSR2, self._handover.set)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SUPERVISOR_SIGNALS)  # blocked over an exec
        try:
            resumed = take_resume_state()
            if resumed is not None:
                self._adopt(resumed)
            else:
                await self._start_proxy(self.proxy)
                await self.app.start()
            return await self._supervise()
        finally:
            await self.proxy.stop()  # the proxy drains while the app still answers
            await self.app.stop()
            for sock in self.listeners.values():
                sock.close()

    def _adopt(self, state: ResumeState) -> None:
        """Take over the children and listeners of the image this process replaced."""
        loop = asyncio.get_running_loop()
        for child, known in ((self.proxy, state.proxy), (self.app, state.app)):
            child.process = AdoptedProcess(known.pid)
            child.starts.extend(known.starts)
        self.proxy.ready = loop.create_future()
        self.proxy.ready.set_result(True)
        for name, fd in state.listeners.items():
            self.listeners[name] = sock = socket.socket(fileno=fd)
            sock.set_inheritable(False)
        log.info("handover done; the supervisor runs the installed code",
                 extra={"event": "handover_done", "pid": state.proxy.pid,
                        "app_pid": state.app.pid, "version": __version__})
        self._record_handover("done", pid=state.proxy.pid, supervisor_version=__version__)

    async def _start_proxy(self, child: Child) -> None:
        """Start a proxy on the kept listeners, with a channel on which it says it is ready."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        ready: asyncio.Future[bool] = loop.create_future()
        child.ready = ready
        fds = {name: sock.fileno() for name, sock in self.listeners.items()}
        env = {**os.environ, LISTEN_FDS_ENV: json.dumps(fds),
               SUPERVISOR_FD_ENV: str(theirs.fileno())}
        try:
            await child.start(env, pass_fds=[*fds.values(), theirs.fileno()])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        loop.add_reader(ours, self._on_proxy_message, ours, child)

    def _on_proxy_message(self, channel: socket.socket, child: Child) -> None:
        try:
            listeners = receive_ready(channel)
        except (OSError, ValueError) as exc:
            log.error("unreadable message from the proxy", extra={"pid": _pid(child),
                                                                  "detail": str(exc)})
            listeners = None
        if listeners is not None:
            for sock in self.listeners.values():
                sock.close()
            self.listeners = listeners
        asyncio.get_running_loop().remove_reader(channel)
        channel.close()
        if child.ready is not None and not child.ready.done():
            child.ready.set_result(listeners is not None)

    async def _supervise(self) -> int:
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            while True:
                handover = asyncio.ensure_future(self._handover.wait())
                waits = {asyncio.ensure_future(c.process.wait()): c  # type: ignore[union-attr]
                         for c in (self.proxy, self.app)}
                done, _ = await asyncio.wait({stop, handover, *waits},
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in (handover, *waits):
                    task.cancel()
                if stop in done:
                    log.info("stopping: proxy drains first, then the app",
                             extra={"service": self.service})
                    return 0
                if handover in done:
                    self._handover.clear()
                    await self._hand_over(stop)
                    continue
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
                        return 128 - code if code < 0 else code or 1  # as a shell says
                    delay = child.restart_delay()
                    log.warning("exited; restarting",
                                extra={"child": child.name, "exit_code": code,
                                       "restart_in_s": delay})
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(stop), delay)
                    if self._stop.is_set():
                        return 0
                    if child is self.proxy:
                        await self._start_proxy(child)
                    else:
                        await child.start()
        finally:
            stop.cancel()

    async def _hand_over(self, stop: "asyncio.Future[Any]") -> None:
        """SIGUSR2: start a new proxy (the version installed now) on the kept listeners; once
        it is ready the old one drains without leaving discovery, whose registration the new
        one holds. A new proxy that exits, or is not ready in time, is given up and the old
        one goes on serving."""
        old = self.proxy
        if not self.listeners or old.ready is None or not old.ready.done() \
                or not old.ready.result():
            reason = "the running proxy has not been ready yet"
            log.error(f"handover refused: {reason}",
                      extra={"event": "handover_failed", "pid": _pid(old), "reason": reason})
            self._record_handover("failed", pid=_pid(old), reason=reason)
            return
        new = Child("proxy", old.argv, old.stop_timeout_s, starts=old.starts)
        log.info("handover: starting a new proxy on the same listeners",
                 extra={"event": "handover_started", "old_pid": _pid(old),
                        "listeners": sorted(self.listeners)})
        await self._start_proxy(new)
        assert new.ready is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.wait({new.ready, stop},
                                                return_when=asyncio.FIRST_COMPLETED),
                                   HANDOVER_READY_TIMEOUT_S)
        if new.ready.done() and new.ready.result():
            self.proxy = new
            log.info("handover: the new proxy is ready; the old one drains",
                     extra={"event": "handover_ready", "pid": _pid(new), "old_pid": _pid(old)})
            code = await old.stop(signal.SIGUSR2)
            log.info("handover: the old proxy stopped", extra={"event": "handover_retired",
                                                               "old_pid": _pid(old),
                                                               "old_exit_code": code})
            await self._reexec()
            return
        assert new.process is not None
        if new.ready.done():  # it closed the channel unready: it is exiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(new.process.wait(), APP_STOP_TIMEOUT_S)
        code = new.process.returncode
        reason = (f"the new proxy exited with {code} before it was ready" if code is not None
                  else "stopping" if stop.done()
                  else f"the new proxy was not ready within {HANDOVER_READY_TIMEOUT_S:.0f} s")
        log.error(f"handover failed: {reason}; the old proxy goes on serving",
                  extra={"event": "handover_failed", "pid": _pid(old), "reason": reason})
        await new.stop()
        old.send(signal.SIGTTIN)  # back to its peers, if the upgrade's drain took it away
        self._record_handover("failed", pid=_pid(old), new_pid=_pid(new), reason=reason)

    async def _reexec(self) -> None:
        """Become the installed version of this supervisor (`vm_mesh.host.reexec`), unless
        it does not import; then keep this code and say so."""
        running = all(c.process is not None and c.process.returncode is None
                      for c in (self.proxy, self.app))
        # From here a signal waits (it stays pending across the exec, for the new image);
        # one that came before is handled while the preflight runs, and a stop among them
        # is carried out by this image instead of being lost in the exec.
        signal.pthread_sigmask(signal.SIG_BLOCK, SUPERVISOR_SIGNALS)
        try:
            reason = await preflight() if running else "a child is not running"
            if reason is None and self._stop.is_set():
                reason = "stopping"
            if reason is None:
                log.info("re-executing the supervisor with the installed code",
                         extra={"event": "supervisor_reexec", "version": __version__})
                try:
                    reexec(ResumeState(
                        ChildState(_pid(self.proxy) or 0, list(self.proxy.starts)),
                        ChildState(_pid(self.app) or 0, list(self.app.starts)),
                        {name: sock.fileno() for name, sock in self.listeners.items()}))
                except OSError as exc:
                    reason = f"exec failed: {exc}"
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SUPERVISOR_SIGNALS)
        kept = f"the supervisor keeps its code: {reason}"
        log.warning(kept, extra={"event": "handover_done", "pid": _pid(self.proxy)})
        self._record_handover("done", pid=_pid(self.proxy), supervisor_version=__version__,
                              note=kept)

    def _record_handover(self, state: str, **details: object) -> None:
        """Leave the outcome where an operator's tooling waits for it (`paths.handover_status`)."""
        record = {"state": state, "ts": time.time(), "service": self.service, **details}
        try:
            write_file(paths.handover_status(self.service), json.dumps(record).encode() + b"\n")
        except OSError as exc:
            log.warning("could not record the handover", extra={"detail": str(exc)})


def _pid(child: Child) -> int | None:
    return child.process.pid if child.process is not None else None
