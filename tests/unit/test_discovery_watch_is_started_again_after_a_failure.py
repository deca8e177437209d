"""A discovery watch that fails is started again, after a delay drawn from a growing window,
instead of leaving the service's endpoints frozen until the proxy restarts."""

from collections.abc import AsyncIterator

from proxy.rewatch import watch_again_on_failure
from vm_mesh.discovery.base import EndpointSet, Instance


def view(*ids: str) -> EndpointSet:
    instances = tuple(Instance("api", i, "198.18.0.2", 4143 + n) for n, i in enumerate(ids))
    return EndpointSet("api", instances, source="consul", updated_at=0.0)


class FlakyBackend:
    """A watch that fails after its first view, then fails at once twice more, then works."""

    def __init__(self) -> None:
        self.started = 0

    async def watch(self) -> AsyncIterator[EndpointSet]:
        self.started += 1
        if self.started in (2, 3):
            raise ConnectionError("agent still away")
        yield view("api-1") if self.started == 1 else view("api-1", "api-2")
        if self.started == 1:
            raise ConnectionError("agent went away")


async def test_a_failed_watch_is_started_again_with_a_growing_delay() -> None:
    backend = FlakyBackend()
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    views = [v async for v in watch_again_on_failure(backend.watch, "api", sleep)]
    assert [[i.instance_id for i in v.instances] for v in views] == [["api-1"], ["api-1", "api-2"]]
    assert backend.started == 4
    windows = [1.0, 2.0, 4.0]  # doubling while it fails in a row
    assert len(pauses) == len(windows)
    assert all(0.0 <= pause <= window for pause, window in zip(pauses, windows, strict=True))
