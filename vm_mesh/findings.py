"""What `vmesh check` and its kin report: one `Finding` per thing judged, each with a stable
reason, a one-line message and a hint how to fix it. Shared by the console's checks and by
`vmesh identity status`, which judges the CA's issuers the same way."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Status(Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Finding:
    """One result line of `vmesh check`."""

    check: str  # admin | listeners | certs | discovery | clock | ports | policy | identity
    status: Status
    target: str
    message: str
    reason: str
    hint: str = ""

    def line(self) -> str:
        mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}[self.status.value]
        text = f"[{mark}] {self.check:<9} {self.target}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint and self.status is not Status.OK else text
