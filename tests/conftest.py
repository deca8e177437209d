"""Fixtures shared by every test folder, and a check that the compiled request path is current."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_consul import FakeConsul

REPO = Path(__file__).resolve().parents[1]


def stale_compiled_modules(root: Path) -> list[str]:
    """The modules whose compiled build (setup.py, mypyc) is older than their source, or has
    no source left: Python would import the build and ignore the source."""
    stale = []
    for built in sorted(root.glob("proxy/*.cpython-*.so")):
        source = built.with_name(built.name.split(".", 1)[0] + ".py")
        if not source.exists() or source.stat().st_mtime > built.stat().st_mtime:
            stale.append(str(source.relative_to(root)))
    return stale


def pytest_sessionstart(session: pytest.Session) -> None:
    if stale := stale_compiled_modules(REPO):
        pytest.exit(f"{', '.join(stale)} changed since it was compiled: run `make venv`",
                    returncode=2)


@pytest.fixture
def agent() -> Iterator[FakeConsul]:
    """A fake Consul agent on loopback that keeps Consul's documented HTTP API."""
    fake = FakeConsul()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def east(agent: FakeConsul) -> Iterator[FakeConsul]:
    """The agent of a second datacenter, `east`, joined to `agent`'s over the WAN."""
    fake = FakeConsul(datacenter="east", node="fake-node-east")
    fake.start()
    agent.federate(fake)
    yield fake
    fake.stop()
