"""Fixtures shared by every test folder."""

from collections.abc import Iterator

import pytest

from tests.fake_consul import FakeConsul


@pytest.fixture
def agent() -> Iterator[FakeConsul]:
    """A fake Consul agent on loopback that keeps Consul's documented HTTP API."""
    fake = FakeConsul()
    fake.start()
    yield fake
    fake.stop()
