"""Fixtures of the multi-host tests: SSH hosts in network namespaces (root only)."""

import os
import shutil
import tempfile
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
def three_hosts() -> Iterator[SshCluster]:
    """Three SSH hosts on one bridge, shared by the tests of a module.

    Their directory is not under pytest's own temporary directory: the hosts' processes run
    as other users (the roles' vmesh user), who must pass through it, and pytest makes its
    directory private again whenever another pytest session starts."""
    require_root()
    for tool in ("ip", "ssh", "ssh-keygen", "/usr/sbin/sshd"):
        require_tool(tool)
    workdir = Path(tempfile.mkdtemp(prefix="vmesh-e2e-hosts-"))
    workdir.chmod(0o711)
    try:
        with ssh_cluster(workdir, count=3) as cluster:
            yield cluster
    finally:
        shutil.rmtree(workdir)
