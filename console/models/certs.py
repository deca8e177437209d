"""`certs`: anchors, issuers and every proxy's leaf on one timeline, with health by threshold.

Thresholds (DESIGN.md: leaves 24 h renewed at 70 %, issuer 1 year, anchor 10
years): a leaf warns once it is past its renewal point (under 30 % left) and
is critical under 10 %; issuers and anchors warn and go critical at fixed
amounts of time left, as their lifetimes are long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from console.api import CertInfo, ProxyCerts


class Health(Enum):
    """How worried to be about a certificate; `style` is the colour the console uses."""

    OK = ("ok", "green")
    WARNING = ("warning", "yellow")
    CRITICAL = ("critical", "red")
    EXPIRED = ("expired", "red")
    NOT_YET_VALID = ("not-yet-valid", "red")

    @property
    def label(self) -> str:
        return self.value[0]

    @property
    def style(self) -> str:
        return self.value[1]

    @property
    def failing(self) -> bool:
        return self in (Health.CRITICAL, Health.EXPIRED, Health.NOT_YET_VALID)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a certificate of one kind becomes a warning and when it becomes critical."""

    warn_fraction: float | None = None
    critical_fraction: float | None = None
    warn_left: timedelta | None = None
    critical_left: timedelta | None = None

    def bounds(self, lifetime: timedelta) -> tuple[timedelta, timedelta]:
        """(warn when less than this is left, critical when less than this is left)."""
        if self.warn_fraction is not None and self.critical_fraction is not None:
            return lifetime * self.warn_fraction, lifetime * self.critical_fraction
        assert self.warn_left is not None and self.critical_left is not None
        return self.warn_left, self.critical_left


THRESHOLDS = {
    "leaf": Thresholds(warn_fraction=0.30, critical_fraction=0.10),
    "issuer": Thresholds(warn_left=timedelta(days=30), critical_left=timedelta(days=7)),
    "anchor": Thresholds(warn_left=timedelta(days=180), critical_left=timedelta(days=30)),
}


def health(cert: CertInfo, now: datetime) -> Health:
    """The health of `cert` at `now` by the thresholds of its kind."""
    if now >= cert.not_after:
        return Health.EXPIRED
    if now < cert.not_before:
        return Health.NOT_YET_VALID
    left = cert.not_after - now
    warn, critical = THRESHOLDS.get(cert.kind, THRESHOLDS["leaf"]).bounds(
        cert.not_after - cert.not_before
    )
    if left < critical:
        return Health.CRITICAL
    if left < warn:
        return Health.WARNING
    return Health.OK


def time_left(cert: CertInfo, now: datetime) -> str:
    """`3d4h`, `5h12m`, `42m`, or `expired 2h ago`."""
    left = cert.not_after - now
    if left <= timedelta(0):
        return f"expired {format_span(-left)} ago"
    return format_span(left)


def format_span(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    if days >= 365:
        years, months = divmod(days * 12 // 365, 12)
        return f"{years}y{months}mo"
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m" if minutes else f"{seconds}s"


def timeline_bar(cert: CertInfo, now: datetime, width: int) -> str:
    """The lifetime as a bar: `#` elapsed, `-` left, `|` at the leaf renewal point (70 %)."""
    if width <= 0:
        return ""
    lifetime = cert.lifetime_s or 1.0
    elapsed = (now - cert.not_before).total_seconds() / lifetime
    filled = max(0, min(width, round(elapsed * width)))
    cells = ["#"] * filled + ["-"] * (width - filled)
    if cert.kind == "leaf":
        cells[min(width - 1, int(0.7 * width))] = "|"
    return "".join(cells)


@dataclass(frozen=True, slots=True)
class CertRow:
    """One line of the certs view."""

    cert: CertInfo
    owners: tuple[str, ...]
    health: Health
    left: str
    next_renewal: datetime | None


def cert_rows(reports: dict[str, ProxyCerts], now: datetime) -> list[CertRow]:
    """Every distinct certificate, anchors first, then issuers, then leaves by time left.

    Issuers and anchors are shared by many proxies: they appear once, with
    every proxy that presented them as owners.
    """
    order = {"anchor": 0, "issuer": 1, "leaf": 2}
    merged: dict[tuple[str, str], tuple[CertInfo, list[str], datetime | None]] = {}
    for proxy, report in sorted(reports.items()):
        for cert in report.certs:
            key = (cert.kind, cert.serial if cert.kind != "leaf" else f"{proxy}/{cert.serial}")
            if key in merged:
                merged[key][1].append(proxy)
            else:
                renewal = report.next_renewal if cert.kind == "leaf" else None
                merged[key] = (cert, [proxy], renewal)
    rows = [
        CertRow(cert, tuple(owners), health(cert, now), time_left(cert, now), renewal)
        for cert, owners, renewal in merged.values()
    ]
    rows.sort(key=lambda r: (order.get(r.cert.kind, 3), r.cert.not_after, r.owners))
    return rows
