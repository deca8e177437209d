"""The `vmesh` command explains itself and never shows a traceback to a user."""

import subprocess
import sys

import pytest

from vm_mesh.cli import build_parser


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vm_mesh", *args], capture_output=True, text=True, timeout=60
    )


def _subcommand_paths(parser, prefix=()):
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for name, sub in choices.items():
                yield (*prefix, name)
                yield from _subcommand_paths(sub, (*prefix, name))


def test_help_lists_every_top_level_command() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for path in _subcommand_paths(build_parser()):
        if len(path) == 1:
            assert path[0] in result.stdout


@pytest.mark.parametrize("path", list(_subcommand_paths(build_parser())), ids=" ".join)
def test_every_subcommand_has_help(path: tuple[str, ...]) -> None:
    result = _run(*path, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: vmesh" in result.stdout


def test_unknown_command_is_one_line_and_nonzero() -> None:
    result = _run("no-such-command")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "invalid choice" in result.stderr
