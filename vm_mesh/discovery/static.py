"""Static discovery: the instances of every service listed in one TOML file.

    [[instance]]
    service = "web"
    id = "web-1"
    address = "127.0.0.1"
    port = 4143

For tests and tiny setups. The file is re-read when it changes; a bad edit is
logged with file and line, and the last good content stays in force. A proxy
counts as registered once the file has been read (`waiting_for`).
"""

import asyncio
import logging
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

from vm_mesh.discovery.base import EndpointSet, Instance

log = logging.getLogger("vmesh.discovery.static")


def parse_instances(text: str) -> list[Instance]:
    """Instances from the file's text; ValueError naming the entry that is wrong."""
    data = tomllib.loads(text)
    instances = []
    for index, entry in enumerate(data.get("instance", []), start=1):
        try:
            instances.append(
                Instance(
                    service=str(entry["service"]),
                    instance_id=str(entry.get("id") or f"{entry['service']}-{index}"),
                    address=str(entry["address"]),
                    port=int(entry["port"]),
                    admin_port=int(entry["admin_port"]) if "admin_port" in entry else None,
                    zone=str(entry.get("zone", "")),
                    weight=int(entry.get("weight", 100)),
                    version=str(entry.get("version", "")),
                    proto=str(entry.get("proto", "http")),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"instance #{index}: missing or invalid {exc}") from None
    return instances


class StaticDiscovery:
    """A `Discovery` backend over a file; registration is the operator's edit of the file."""

    def __init__(self, path: Path, poll_interval: float = 1.0) -> None:
        self.path = path
        self.poll_interval = poll_interval
        self._instances: list[Instance] = []
        self._fingerprint: tuple[int, int] | None = None
        self._loaded_at = 0.0  # when content was last taken from the file (0: never)
        self._rejected: str | None = None  # why the file's current content was not taken

    def _refresh(self) -> bool:
        """Re-read the file if it changed; True when the content in force changed."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            if self._fingerprint is None:
                return False
            log.warning("endpoints file is gone; keeping the last content",
                        extra={"file": str(self.path)})
            return False
        fingerprint = (stat.st_mtime_ns, stat.st_size)
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        try:
            instances = parse_instances(self.path.read_text())
        except (tomllib.TOMLDecodeError, ValueError) as exc:
            self._rejected = str(exc)
            log.error("endpoints file rejected; the last good content stays in force",
                      extra={"file": str(self.path), "reason": str(exc)})
            return False
        self._rejected = None
        changed = instances != self._instances
        self._instances = instances
        self._loaded_at = time.time()
        return changed

    def current(self, service: str) -> EndpointSet:
        return EndpointSet(
            service=service,
            instances=tuple(i for i in self._instances if i.service == service),
            source="static",
            updated_at=self._loaded_at,
        )

    async def register(self, instance: Instance) -> None:
        """Read the file (registration is the operator's edit of it)."""
        log.debug("static discovery: registration is done by editing the file",
                  extra={"file": str(self.path), "instance": instance.instance_id})
        self._refresh()

    def waiting_for(self, instance: Instance) -> str | None:
        """Until the file has been read once (looked at again on each call until then)."""
        if not self._loaded_at:
            self._refresh()
        if self._loaded_at:
            return None
        if self._rejected is not None and self.path.exists():
            return f"{self.path} rejected ({self._rejected})"
        return f"no endpoints file at {self.path} yet"

    async def deregister(self, instance: Instance) -> None:
        return None

    async def watch(self, service: str) -> AsyncIterator[EndpointSet]:
        self._refresh()
        last = self.current(service)
        yield last
        while True:
            await asyncio.sleep(self.poll_interval)
            self._refresh()
            now = self.current(service)
            if now.instances != last.instances:
                last = now
                yield now

    async def close(self, withdraw: bool = True) -> None:
        return None
