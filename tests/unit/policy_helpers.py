"""Build a PolicySet from YAML text in unit tests."""

import textwrap

from vm_mesh.policy.loader import load_texts
from vm_mesh.policy.policyset import PolicySet


def policy(text: str, name: str = "test.yaml") -> PolicySet:
    return load_texts([(name, textwrap.dedent(text))])
