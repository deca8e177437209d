"""`hosts`: the vmesh proxy processes of this host with CPU, RSS and uptime (psutil).

A proxy process is recognised by its command line (`vmesh proxy run SERVICE`,
also as `python -m vm_mesh proxy run SERVICE`); its instance comes from the
service file under the process's own VMESH_ROOT, read once per process (two
instances of a service on one host, as in the demo, each have a root). CPU
percentages need two samples, so the sampler keeps its `Process` objects
between calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from vm_mesh import paths
from vm_mesh.config import load_service_config
from vm_mesh.errors import UserError


@dataclass(frozen=True, slots=True)
class ProxyProcess:
    """One sample of one proxy process."""

    pid: int
    service: str
    instance: str  # "" when the process's service file cannot be read
    cpu_percent: float
    rss_bytes: int
    threads: int
    uptime_s: float


def proxy_service(cmdline: list[str]) -> str | None:
    """The service of a `... proxy run SERVICE ...` command line, else None."""
    for i in range(len(cmdline) - 2):
        if cmdline[i] == "proxy" and cmdline[i + 1] == "run":
            rest = [a for a in cmdline[i + 2:] if not a.startswith("-")]
            joined = " ".join(cmdline[:i])
            if rest and ("vmesh" in joined or "vm_mesh" in joined):
                return rest[0]
    return None


def proxy_instance(proc: psutil.Process, service: str) -> str:
    """The instance `proc` serves, from `service`'s file under the process's VMESH_ROOT
    (under this console's when the process's environment cannot be read); "" when the
    file cannot be read or is invalid."""
    try:
        under: Path | None = Path(proc.environ().get("VMESH_ROOT") or "/")
    except psutil.Error:
        under = None
    try:
        return load_service_config(paths.service_config(service, under)).config.instance
    except (UserError, OSError):
        return ""


class HostSampler:
    """Samples the proxy processes of this host; call `sample()` periodically."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[psutil.Process, str, str]] = {}

    def sample(self) -> list[ProxyProcess]:
        seen: dict[int, tuple[psutil.Process, str, str]] = {}
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                service = proxy_service(proc.info["cmdline"] or [])
            except (psutil.Error, TypeError):
                continue
            if service:
                known = self._known.get(proc.pid)
                seen[proc.pid] = known or (proc, service, proxy_instance(proc, service))
        self._known = seen
        now = time.time()
        rows = []
        for pid, (proc, service, instance) in sorted(
                seen.items(), key=lambda kv: (kv[1][1], kv[1][2], kv[0])):
            try:
                with proc.oneshot():
                    rows.append(ProxyProcess(
                        pid=pid,
                        service=service,
                        instance=instance,
                        cpu_percent=proc.cpu_percent(None),
                        rss_bytes=proc.memory_info().rss,
                        threads=proc.num_threads(),
                        uptime_s=now - proc.create_time(),
                    ))
            except psutil.Error:
                continue
        return rows
