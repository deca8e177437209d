"""Endpoints for balancer tests: a name, a peak-EWMA estimate on a clock the test moves."""

from proxy.balance import PeakEwma


class Clock:
    """Monotonic time that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Endpoint:
    """What `proxy.balance.pick` needs of an endpoint, named."""

    def __init__(self, name: str, clock: Clock, up: bool = True, weight: int = 100) -> None:
        self.name = name
        self.ewma = PeakEwma(clock)
        self.up = up
        self.weight = weight

    def available(self) -> bool:
        return self.up
