"""`/v1/stats` says which window its figures cover: the one asked for, within the one second
to ten minutes a proxy keeps."""

from pathlib import Path

import pytest

from tests.integration.admin_support import local_admin


@pytest.mark.parametrize(
    ("asked", "covered"), [("30s", 30), ("10m", 600), ("1h", 600), ("500ms", 1)]
)
async def test_stats_report_the_window_they_cover(
    tmp_path: Path, asked: str, covered: float
) -> None:
    async with local_admin(tmp_path) as admin, admin.client() as client:
        stats = (await client.get("/v1/stats", params={"window": asked})).json()
    assert stats["window_s"] == covered
