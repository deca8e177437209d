"""Helpers shared by the test suites."""

import os
import shutil

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
