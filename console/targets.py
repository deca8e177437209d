"""Prometheus scrape targets from vmesh discovery, in the `file_sd_configs` format.

Prometheus finds targets in Consul by itself, but not over mDNS or in vmesh's
static file: `vmesh targets --out FILE` writes every proxy's admin address
(port 4191, mTLS) that discovery lists, and every mesh gateway's that has an
admin port (it registers it in Consul as a proxy does), one group per proxy
labelled with its instance id, and Prometheus re-reads the file when it changes. The file is
replaced in one rename, so Prometheus never reads half of it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from console.sources import Source


def file_sd(sources: Iterable[Source]) -> list[dict[str, Any]]:
    """One target group per proxy reachable over TCP (admin sockets are local only), sorted."""
    return [
        {"targets": [source.address],
         "labels": {"vmesh_instance": source.instance or source.name,
                    "vmesh_discovery": source.origin}}
        for source in sorted(sources, key=lambda s: (s.instance or s.name, s.address))
        if source.kind == "tcp"
    ]


def render(groups: list[dict[str, Any]]) -> str:
    return json.dumps(groups, indent=2) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename (a reader sees the old file or the new one)."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    temporary = Path(name)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        temporary.chmod(0o644)  # mkstemp's 0600 would keep a prometheus user out
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
