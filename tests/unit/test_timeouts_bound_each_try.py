"""The next attempt gets the smaller of the per-try timeout and what is left of the request."""

from proxy.route import DEFAULT_REQUEST_TIMEOUT, RequestFacts, RouteTable
from proxy.timeouts import PER_TRY_TIMEOUT, REQUEST_TIMEOUT, Deadline
from tests.unit.policy_helpers import policy


class FakeClock:
    now = 50.0

    def __call__(self) -> float:
        return self.now


def deadline(timeout: str, clock: FakeClock) -> Deadline:
    text = f"kind: HTTPRoute\nname: r\nservice: s\nrules:\n  - timeout: {timeout}\n"
    target = RouteTable("s", policy(text)).match(RequestFacts.build("GET", "/"))
    return Deadline(target.timeouts, clock)


def test_per_try_until_the_request_deadline_is_closer() -> None:
    clock = FakeClock()
    request = deadline("{request: 2s, per_try: 500ms}", clock)
    assert request.next_try() == (0.5, PER_TRY_TIMEOUT)
    clock.now += 1.7
    timeout, reason = request.next_try()
    assert reason == REQUEST_TIMEOUT and abs(timeout - 0.3) < 1e-9
    assert not request.expired()
    clock.now += 0.3
    assert request.expired()


def test_without_a_request_timeout_the_mesh_default_bounds_the_request() -> None:
    clock = FakeClock()
    request = deadline("{}", clock)
    assert request.next_try() == (DEFAULT_REQUEST_TIMEOUT, REQUEST_TIMEOUT)
    clock.now += DEFAULT_REQUEST_TIMEOUT - 0.001
    assert not request.expired()
    clock.now += 0.001
    assert request.expired()
    per_try_only = deadline("{per_try: 1s}", clock)
    assert per_try_only.next_try() == (1.0, PER_TRY_TIMEOUT)
