"""How numbers look in every view and CLI table (one place, so they agree)."""

from __future__ import annotations

from collections.abc import Sequence


def rps(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def percent(value: float | None) -> str:
    """A ratio 0..1 as `99.50%`."""
    return "-" if value is None else f"{value * 100:.2f}%"


def ms(value: float | None) -> str:
    """Latency: `3ms`, `250ms`, `1.5s`; `-` when unknown."""
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.1f}s"
    if value >= 10:
        return f"{value:.0f}ms"
    return f"{value:.1f}ms"


def size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f}{unit}" if unit == "B" else f"{n_bytes:.1f}{unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def ago(seconds: float | None) -> str:
    """`4s ago`, `3m ago`, `never`."""
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def columns(header: Sequence[str], rows: Sequence[Sequence[str]],
            right: frozenset[int] = frozenset()) -> str:
    """Plain aligned text columns (two spaces apart), as `linkerd viz stat` prints them."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(header), *(line(row) for row in rows)])


def address(text: str, limit: int = 28) -> str:
    """An admin address in at most `limit` characters: a long socket path keeps its last
    components (`…/run/vmesh/api-1.sock`), what tells instances apart; anything else that
    is long keeps its end."""
    if len(text) <= limit:
        return text
    if "/" in text:
        parts = text.split("/")
        tail = parts[-1]
        for part in reversed(parts[1:-1]):
            if len(part) + len(tail) + 3 > limit:
                break
            tail = f"{part}/{tail}"
        if len(tail) + 2 <= limit:
            return f"…/{tail}"
    return "…" + text[-(limit - 1):]
