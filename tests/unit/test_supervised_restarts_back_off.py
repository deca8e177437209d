"""A supervised child that keeps failing waits longer before each restart, up to a cap."""

from vm_mesh.host.launcher import RESTART_DELAY_MAX_S, RESTART_DELAY_S, Child


def test_restart_delay_doubles_with_recent_failures_and_is_capped() -> None:
    child = Child("app", ["true"], 1.0)
    delays = []
    for started_at in range(12):
        child.starts.append(float(started_at))
        delays.append(child.restart_delay())
    assert delays[:3] == [RESTART_DELAY_S, 2 * RESTART_DELAY_S, 4 * RESTART_DELAY_S]
    assert delays[-1] == RESTART_DELAY_MAX_S


def test_failures_older_than_the_start_limit_interval_are_forgotten() -> None:
    child = Child("app", ["true"], 1.0)
    child.starts.extend([0.0, 1.0, 2.0])
    assert child.may_restart(1_000.0)  # drops the old starts
    assert child.restart_delay() == RESTART_DELAY_S
