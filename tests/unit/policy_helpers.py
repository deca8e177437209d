"""Build a PolicySet from YAML text in unit tests."""

import asyncio
import textwrap
from collections.abc import Callable

from vm_mesh.policy.loader import load_texts
from vm_mesh.policy.policyset import PolicySet


def policy(text: str, name: str = "test.yaml") -> PolicySet:
    return load_texts([(name, textwrap.dedent(text))])


async def eventually(condition: Callable[[], object], within: float = 5.0) -> None:
    """Poll `condition` until it holds; fail after `within` seconds."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - state owned by code under test, no event
            await asyncio.sleep(0.02)
