"""`vmesh demo --rate 0` (or below) is refused in one line naming the option, before it starts."""

from pathlib import Path

import pytest

from vm_mesh.cli import main


@pytest.mark.parametrize("rate", ["0", "-5"])
def test_a_rate_that_is_not_positive_is_refused(rate: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "demo"
    assert main(["demo", "--no-console", "--dir", str(directory), "--rate", rate]) == 1
    err = capsys.readouterr().err
    assert err == f"vmesh: --rate {rate}: must be more than 0 requests per second\n"
    assert not directory.exists()  # nothing was started
