"""Helpers shared by the test suites."""

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable

import pytest


def require_tool(name: str) -> str:
    """Path of a system tool the test drives; skip locally, fail under CI when it is missing."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (scripts/install-system-deps.sh installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def follow_json_logs(
    proc: subprocess.Popen[str], sink: list[dict], on_record: Callable[[dict], None]
) -> None:
    """Collect a process's JSON log lines into `sink` from a background thread.

    Each parsed line (a non-JSON line becomes `{"msg": line}`) is appended and then
    passed to `on_record`, which tests use to notice readiness.
    """

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = {"msg": line.rstrip()}
            sink.append(record)
            on_record(record)

    threading.Thread(target=read, daemon=True).start()
