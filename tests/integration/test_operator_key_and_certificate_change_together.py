"""`vmesh identity operator` replaces the operator's key, certificate and bundle as one: a run
that fails halfway (here, a file size limit stops its writes, as a full disk would) leaves
the pair in place usable, never a new key beside the old certificate; and each file moved
in place is made durable with an fsync of its directory after the rename."""

import re
import resource
import ssl
import subprocess
import sys
from pathlib import Path

from tests.integration.identity_service import REPO, vmesh
from tests.support import require_tool

# strace lines: a path opened as an fd, a file renamed to a path, an fd synced
OPENAT = re.compile(r'openat\(AT_FDCWD, "([^"]+)", [^)]*\)\s+= (\d+)')
RENAME = re.compile(r'rename(?:at2?)?\(.*"([^"]+)"(?:, \w+)?\)\s+= 0')
FSYNC = re.compile(r"fsync\((\d+)\)\s+= 0")


def operator_files(root: Path) -> dict[str, bytes]:
    directory = root / "var/lib/vmesh/operator"
    return {name: (directory / name).read_bytes() for name in ("key.pem", "cert.pem", "bundle.pem")}


def loads_as_a_pair(root: Path) -> None:
    directory = root / "var/lib/vmesh/operator"
    ssl.create_default_context().load_cert_chain(directory / "cert.pem", directory / "key.pem")


def test_a_run_that_fails_halfway_leaves_the_pair_in_place(tmp_path: Path) -> None:
    vmesh(tmp_path, "identity", "init")
    vmesh(tmp_path, "identity", "operator", "alice")
    before = operator_files(tmp_path)
    limit = len(before["cert.pem"]) - 100  # the key and the bundle fit, the certificate not
    assert len(before["key.pem"]) < limit and len(before["bundle.pem"]) < limit

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    failed = subprocess.run([sys.executable, "-m", "vm_mesh", "identity", "operator", "alice"],
                            cwd=REPO, env={"VMESH_ROOT": str(tmp_path), "PATH": "/usr/bin",
                                           "PYTHONDONTWRITEBYTECODE": "1"},
                            capture_output=True, text=True, timeout=60,
                            preexec_fn=limit_file_size)

    assert failed.returncode != 0, failed.stdout
    assert operator_files(tmp_path) == before
    loads_as_a_pair(tmp_path)
    vmesh(tmp_path, "identity", "operator", "alice")  # the next run replaces all three
    after = operator_files(tmp_path)
    assert after["key.pem"] != before["key.pem"] and after["cert.pem"] != before["cert.pem"]
    loads_as_a_pair(tmp_path)


def test_each_file_moved_in_place_is_followed_by_an_fsync_of_its_directory(
    tmp_path: Path,
) -> None:
    vmesh(tmp_path, "identity", "init")
    strace = require_tool("strace")
    trace = tmp_path / "strace.txt"
    subprocess.run([strace, "-f", "-o", str(trace), "-e",
                    "trace=openat,rename,renameat,renameat2,fsync",
                    sys.executable, "-m", "vm_mesh", "identity", "operator", "alice"],
                   cwd=REPO, env={"VMESH_ROOT": str(tmp_path), "PATH": "/usr/bin"},
                   check=True, capture_output=True, timeout=120)

    directory = str(tmp_path / "var/lib/vmesh/operator")
    opened: dict[str, str] = {}  # fd -> the path it was opened on
    unsynced: list[str] = []  # files renamed into `directory` with no fsync of it since
    for line in trace.read_text().splitlines():
        if m := OPENAT.search(line):
            opened[m.group(2)] = m.group(1)
        elif m := RENAME.search(line):
            if str(Path(m.group(1)).parent) == directory:
                unsynced.append(Path(m.group(1)).name)
        elif (m := FSYNC.search(line)) and opened.get(m.group(1)) == directory:
            unsynced.clear()
    loads_as_a_pair(tmp_path)
    assert unsynced == [], f"moved into {directory} without an fsync of it after: {unsynced}"
