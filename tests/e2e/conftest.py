"""Fixtures of the multi-host tests: SSH hosts in network namespaces (root only)."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.sshhosts import SshCluster, ssh_cluster
from tests.support import require_tool


def require_root() -> None:
    """Network namespaces need root; fail under CI, skip elsewhere."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("the e2e tests create network namespaces and need root")
    pytest.skip("the e2e tests create network namespaces and need root")


@pytest.fixture(scope="module")
def three_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    """Three SSH hosts on one bridge, shared by the tests of a module."""
    require_root()
    for tool in ("ip", "ssh", "ssh-keygen", "/usr/sbin/sshd"):
        require_tool(tool)
    workdir: Path = tmp_path_factory.mktemp("hosts")
    with ssh_cluster(workdir, count=3) as cluster:
        yield cluster
