"""`vmesh systemd render --drain 0` is refused in one line naming the option."""

from pathlib import Path

import pytest

from vm_mesh.cli import main


def test_zero_drain_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["systemd", "render", "--output", str(tmp_path), "--drain", "0"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("vmesh: --drain 0: must be at least 1 second") and err.count("\n") == 1
    assert not list(tmp_path.iterdir())
