"""`vmesh run` replacing its own code without letting go of its children.

After its proxy was handed over to a newly installed version, the supervisor
execs itself: the same PID (so systemd and start-stop-daemon see nothing
change), the same children (they stay its children across exec), the same
listening sockets (made inheritable for the exec), and the installed code.
What the new image needs to carry on travels in one environment variable,
`VMESH_RUN_RESUME`; it adopts the children by PID and waits for them through
pidfds, since their asyncio transports did not survive the exec.
"""

import asyncio
import json
import os
import signal
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field

RESUME_ENV = "VMESH_RUN_RESUME"
# The supervisor's signals: blocked across the exec (the mask and pending signals survive
# it), so one that arrives before the new image set its handlers waits instead of killing.
SUPERVISOR_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                                signal.SIGUSR2, signal.SIGTTIN})
# Imported by the new image before anything else runs; a release that breaks them is not
# exec'ed into, and the running supervisor keeps its code.
PREFLIGHT_IMPORTS = "import vm_mesh.host.cli, vm_mesh.host.launcher, vm_mesh.host.reexec"


@dataclass(frozen=True)
class ChildState:
    """What the supervisor knows of one child: its PID and its recent start times."""

    pid: int
    starts: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class ResumeState:
    """Everything a re-executed supervisor takes over."""

    proxy: ChildState
    app: ChildState
    listeners: dict[str, int]  # listener name -> descriptor

    def dumps(self) -> str:
        return json.dumps({"proxy": vars(self.proxy), "app": vars(self.app),
                           "listeners": self.listeners})

    @classmethod
    def loads(cls, text: str) -> "ResumeState":
        """ValueError (or KeyError/TypeError, as ValueError) when `text` is not one."""
        try:
            data = json.loads(text)
            return cls(ChildState(int(data["proxy"]["pid"]), [float(t) for t in
                                                               data["proxy"]["starts"]]),
                       ChildState(int(data["app"]["pid"]), [float(t) for t in
                                                             data["app"]["starts"]]),
                       {str(k): int(v) for k, v in data["listeners"].items()})
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a resume state: {exc!r}") from None


def take_resume_state(environ: MutableMapping[str, str] = os.environ) -> ResumeState | None:
    """The state a previous image of this process left, if this one was exec'ed into."""
    text = environ.pop(RESUME_ENV, "")
    return ResumeState.loads(text) if text else None


async def preflight() -> str | None:
    """Import the installed supervisor code in a throwaway interpreter: None when it
    imports, else why not."""
    check = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PREFLIGHT_IMPORTS,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await check.communicate()
    if check.returncode == 0:
        return None
    lines = err.decode(errors="replace").strip().splitlines()
    return f"the installed vmesh does not import ({lines[-1] if lines else check.returncode})"


def reexec(state: ResumeState, environ: Mapping[str, str] = os.environ) -> None:
    """Replace this process's image with the installed one, same command line; returns
    only if the exec failed (OSError)."""
    for fd in state.listeners.values():
        os.set_inheritable(fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    signal.pthread_sigmask(signal.SIG_BLOCK, SUPERVISOR_SIGNALS)
    try:
        os.execve(sys.executable, sys.orig_argv, {**environ, RESUME_ENV: state.dumps()})
    finally:  # reached only when the exec failed
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SUPERVISOR_SIGNALS)
        for fd in state.listeners.values():
            os.set_inheritable(fd, False)


class AdoptedProcess:
    """A child inherited across exec: the subset of `asyncio.subprocess.Process` the
    supervisor uses, over a pidfd."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = loop.create_future()
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:  # reaped before the exec: its exit status is lost
            self._pidfd = None
            self._finish(-1)
            return
        loop.add_reader(self._pidfd, self._reap)

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            self._finish(-1)
            return
        if pid:
            self._finish(os.waitstatus_to_exitcode(status))

    def _finish(self, code: int) -> None:
        self.returncode = code
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if not self._exited.done():
            self._exited.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def send_signal(self, signum: int) -> None:
        if self.returncode is None and self._pidfd is not None:
            signal.pidfd_send_signal(self._pidfd, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
