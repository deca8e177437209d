"""The policy in force, and its reloading: on file change (polled) and on demand (SIGHUP).

A valid change replaces the PolicySet atomically (readers hold the old one
until their request ends; connections are never touched). An invalid change
is refused: every error is logged in the `vmesh policy check` format and the
previous policy stays in force. A load that changes the policy also warns of each
Authorization that names no service of this host (`vm_mesh.policy.unprotected`).
"""

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from vm_mesh import paths
from vm_mesh.policy.files import PolicyError, PolicyInvalid, policy_files
from vm_mesh.policy.policyset import PolicySet
from vm_mesh.policy.unprotected import unknown_services

log = logging.getLogger("vmesh.policy")

Listener = Callable[[PolicySet], None]
Fingerprint = tuple[tuple[str, int, int, int], ...]


def _fingerprint(directory: Path) -> Fingerprint:
    entries = []
    for path in policy_files(directory):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        entries.append((path.name, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(entries)


class PolicyStore:
    """Holds the current PolicySet of a policy directory and reloads it."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or paths.policy_dir()
        self.current = PolicySet()
        self.generation = 0
        self.errors: list[PolicyError] = []
        self._fingerprint: Fingerprint | None = None
        self._listeners: list[Listener] = []
        # Documents from other sources than the directory (Consul KV), as (name, text).
        self.extra_texts: tuple[tuple[str, str], ...] = ()

    def load_initial(self) -> PolicySet:
        """First load; raises PolicyInvalid so a proxy never starts on a broken policy."""
        self._fingerprint = _fingerprint(self.directory)
        self._install(self._load(), "initial")
        return self.current

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(policy)` after every successful reload."""
        self._listeners.append(listener)

    def reload(self, trigger: str = "request") -> bool:
        """Load the directory again; True if the new policy is now in force."""
        self._fingerprint = _fingerprint(self.directory)
        try:
            policy = self._load()
        except PolicyInvalid as exc:
            self.errors = exc.errors
            for error in exc.errors:
                log.error(
                    str(error),
                    extra={"event": "policy_error", "code": error.code, "file": error.file,
                           "line": error.line},
                )
            log.error(
                "policy reload refused: %d error(s); the previous policy stays in force",
                len(exc.errors),
                extra={"event": "policy_refused", "trigger": trigger,
                       "digest": self.current.digest(), "errors": [str(e) for e in exc.errors]},
            )
            return False
        self._install(policy, trigger)
        return True

    def _load(self) -> PolicySet:
        files = policy_files(self.directory)
        if not files and not self.extra_texts:
            return PolicySet()
        # the YAML parser and the document validators are loaded with the first document
        from vm_mesh.policy.loader import load_files

        return load_files(files, self.extra_texts)

    def _install(self, policy: PolicySet, trigger: str) -> None:
        changed = policy.digest() != self.current.digest() or self.generation == 0
        self.current = policy
        self.errors = []
        self.generation += 1
        log.info(
            "policy loaded: %d document(s) from %d file(s)",
            len(policy),
            len(policy.files),
            extra={"event": "policy_loaded", "trigger": trigger, "digest": policy.digest(),
                   "generation": self.generation, "changed": changed},
        )
        if changed:
            self._warn_of_unknown_services(policy)
        for listener in self._listeners:
            listener(policy)

    @staticmethod
    def _warn_of_unknown_services(policy: PolicySet) -> None:
        """Log each Authorization that names no service of this host (`unprotected`)."""
        for warning in unknown_services(policy, paths.service_names()):
            log.warning(
                str(warning),
                extra={"event": "policy_warning", "code": warning.code, "file": warning.file,
                       "line": warning.line},
            )

    def set_extra_texts(self, texts: tuple[tuple[str, str], ...], trigger: str = "consul") -> bool:
        """Replace the documents of another source and reload; refused like a bad file. The
        texts are kept either way, as a file's are: a reload that failed on a bad file loads
        them once the file is fixed (the source does not send them again)."""
        self.extra_texts = texts
        return self.reload(trigger)

    def changed_on_disk(self) -> bool:
        return _fingerprint(self.directory) != self._fingerprint

    async def watch(self, interval: float = 0.25) -> None:
        """Poll the directory and reload when a policy file appears, changes or goes away."""
        while True:
            await asyncio.sleep(interval)
            if await asyncio.to_thread(self.changed_on_disk):
                self.reload("file-change")

    def install_sighup(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reload on SIGHUP (POSIX only; call from the thread running `loop`)."""
        if os.name == "posix":
            import signal

            loop.add_signal_handler(signal.SIGHUP, self.reload, "sighup")

    def describe(self) -> dict[str, object]:
        """The policy part of `/v1/config`: every document with its source, and refused errors."""
        return {
            "directory": str(self.directory),
            "generation": self.generation,
            "digest": self.current.digest(),
            "documents": self.current.describe(),
            "refused": [str(e) for e in self.errors],
        }
