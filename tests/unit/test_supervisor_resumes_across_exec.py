"""What `vmesh run` carries across its own exec (vm_mesh/host/reexec.py): the state round-trips,
a damaged one is refused, and an adopted child is waited for and signalled like a spawned one."""

import asyncio
import os
import signal

import pytest

from vm_mesh.host.reexec import (
    RESUME_ENV,
    AdoptedProcess,
    ChildState,
    ResumeState,
    take_resume_state,
)


def test_the_resume_state_survives_the_trip_through_the_environment() -> None:
    state = ResumeState(ChildState(41, [10.5, 12.0]), ChildState(42, [10.0]),
                        {"inbound": 5, "outbound": 6})
    environ = {RESUME_ENV: state.dumps(), "PATH": "/bin"}

    assert take_resume_state(environ) == state
    assert environ == {"PATH": "/bin"}  # not handed on to the children
    assert take_resume_state(environ) is None


@pytest.mark.parametrize("text", ["{", "[]", '{"proxy": {"pid": 1}}',
                                  '{"proxy": {"pid": "x", "starts": []}, "app": {}}'])
def test_a_damaged_resume_state_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        ResumeState.loads(text)


def test_an_adopted_child_is_signalled_and_its_exit_status_read() -> None:
    pid = os.posix_spawnp("sleep", ["sleep", "30"], dict(os.environ))

    async def scenario() -> tuple[int, int | None]:
        child = AdoptedProcess(pid)
        child.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(child.wait(), 10)
        return code, child.returncode

    assert asyncio.run(scenario()) == (-signal.SIGTERM, -signal.SIGTERM)


def test_a_child_that_exited_before_adoption_reports_its_exit_code() -> None:
    pid = os.posix_spawnp("sh", ["sh", "-c", "exit 3"], dict(os.environ))
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie

    async def scenario() -> int:
        return await asyncio.wait_for(AdoptedProcess(pid).wait(), 10)

    assert asyncio.run(scenario()) == 3
