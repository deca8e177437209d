"""`hosts`: the vmesh proxy processes of this host with CPU, RSS and uptime (psutil).

A proxy process is recognised by its command line (`vmesh proxy run SERVICE`,
also as `python -m vm_mesh proxy run SERVICE`). CPU percentages need two
samples, so the sampler keeps its `Process` objects between calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True, slots=True)
class ProxyProcess:
    """One sample of one proxy process."""

    pid: int
    service: str
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


class HostSampler:
    """Samples the proxy processes of this host; call `sample()` periodically."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[psutil.Process, str]] = {}

    def sample(self) -> list[ProxyProcess]:
        seen: dict[int, tuple[psutil.Process, str]] = {}
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                service = proxy_service(proc.info["cmdline"] or [])
            except (psutil.Error, TypeError):
                continue
            if service:
                seen[proc.pid] = self._known.get(proc.pid, (proc, service))
        self._known = seen
        now = time.time()
        rows = []
        for pid, (proc, service) in sorted(seen.items(), key=lambda kv: (kv[1][1], kv[0])):
            try:
                with proc.oneshot():
                    rows.append(ProxyProcess(
                        pid=pid,
                        service=service,
                        cpu_percent=proc.cpu_percent(None),
                        rss_bytes=proc.memory_info().rss,
                        threads=proc.num_threads(),
                        uptime_s=now - proc.create_time(),
                    ))
            except psutil.Error:
                continue
        return rows
