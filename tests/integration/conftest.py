"""Fixtures of the integration tests."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.mesh import Mesh


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    """A mesh under `tmp_path` (static discovery), its proxies stopped at the end."""
    mesh = Mesh(tmp_path)
    try:
        yield mesh
    finally:
        mesh.stop()
