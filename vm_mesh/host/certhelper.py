"""`vmesh cert-helper NAME`: a mesh certificate for a program that no vmesh proxy fronts.

Prometheus scraping the proxies' admin port is such a program: it needs a leaf
of the mesh, renewed as a proxy's is, and an operator's (which may also tap
and read logs, and is issued for a day by hand) is more than it should hold.
The helper trades a one-time join token for `svc/NAME`'s first leaf when its
directory holds no valid one, then renews it at ~70 % of its life for as long
as it runs, as SPIFFE's spiffe-helper does. The program reads `cert.pem`,
`key.pem` and `bundle.pem` from the directory, each replaced in one rename.
With `--once` it only makes sure of a usable leaf and exits (provisioning, as
spiffe-helper's non-daemon mode does); the running helper renews it.
"""

import asyncio
import logging
import signal
import time
from pathlib import Path

from identity import pki
from identity.client import LeafFiles, obtain
from identity.renewer import Renewer
from vm_mesh.errors import UserError

log = logging.getLogger("vmesh.cert_helper")


def usable_leaf(files: LeafFiles, name: str, now: float) -> bool:
    """Whether `files` hold an unexpired leaf of `svc/name`; a leaf of another identity is
    an error, not something to replace."""
    try:
        leaf = files.leaf()
    except (FileNotFoundError, ValueError, IndexError):
        return False
    try:
        identity = pki.identity_of(leaf)
    except ValueError as exc:
        raise UserError(f"{files.cert} is not a mesh leaf ({exc}); pick another --dir") from None
    if (identity.kind, identity.name) != ("svc", name):
        raise UserError(f"{files.cert} holds {identity}, not a leaf of svc/{name}; "
                        "pick another --dir")
    return leaf.not_valid_after_utc.timestamp() > now


async def ensure_leaf(url: str, name: str, directory: Path, token: str | None,
                      host: str) -> LeafFiles:
    """`directory`'s files, after obtaining `svc/name`'s leaf with `token` if they hold no
    usable one."""
    files = LeafFiles(directory)
    if not usable_leaf(files, name, time.time()):
        if token is None:
            raise UserError(
                f"no valid certificate of {name} in {directory}: pass --token (from "
                f"`vmesh identity token create --host {host} --services {name}` on the CA host)"
            )
        await obtain(url, token, host=host, service=name, directory=directory)
    return files


async def keep(url: str, name: str, directory: Path, token: str | None, host: str) -> None:
    """Obtain `svc/name`'s leaf into `directory` if it holds no usable one, then renew it
    until cancelled."""
    leaf = (await ensure_leaf(url, name, directory, token, host)).leaf()
    log.info("keeping the certificate renewed",
             extra={"identity": str(pki.identity_of(leaf)), "directory": str(directory),
                    "not_after": leaf.not_valid_after_utc.isoformat()})
    await Renewer(url, directory).run()


async def run_until_stopped(url: str, name: str, directory: Path, token: str | None,
                            host: str) -> int:
    """`keep` until SIGTERM or SIGINT; 0 once stopped by one."""
    task = asyncio.create_task(keep(url, name, directory, token, host))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        log.info("stopped")
    return 0
