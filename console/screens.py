"""Modal screens of the console: the tap detail pane and the key help."""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from console.api import TapEvent


class TapDetail(ModalScreen[None]):
    """Every field of one tap event; esc, enter or q closes it."""

    BINDINGS = [Binding("escape,enter,q", "dismiss", "Close", id="detail.close")]

    def __init__(self, event: TapEvent) -> None:
        super().__init__()
        self.event = event

    # Short fields share a line, so that every field fits on an 80x24 terminal.
    LAYOUT = (
        ("proxy", "direction"), ("id", "tls"), ("time",), ("src.id",), ("src.addr",),
        ("dst.service", "dst.instance"), ("dst.addr",), ("dst.id",), ("method", "status"),
        ("authority", "route"), ("path",), ("latency", "retries"), ("bytes in", "bytes out"),
        ("policy.decision", "policy.rule"), ("error",), ("trace id",),
    )

    def compose(self) -> ComposeResult:
        values = dict(self.event.fields())
        lines = []
        for labels in self.LAYOUT:
            first = f"{labels[0]:>15}  {values[labels[0]]}"
            if len(labels) == 2 and len(first) <= 40:
                lines.append(f"{first:<40}{labels[1]:>12}  {values[labels[1]]}")
            else:
                lines.append(first)
                lines += [f"{label:>15}  {values[label]}" for label in labels[1:]]
        text = "\n".join(lines)
        with VerticalScroll(id="detail"):
            yield Static(f"request {self.event.id} at {self.event.proxy}", classes="title")
            yield Static(text, id="detail-fields")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)


class HelpScreen(ModalScreen[None]):
    """Every key of the console and of the current view."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close")]

    def __init__(self, sections: Iterable[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = list(sections)

    def compose(self) -> ComposeResult:
        lines: list[str] = []
        for title, keys in self.sections:
            lines.append(f"[b]{title}[/b]")
            lines += [f"  {key:<14} {description}" for key, description in keys]
            lines.append("")
        with VerticalScroll(id="help"):
            yield Static("keys (esc closes)", classes="title")
            yield Static("\n".join(lines).rstrip(), id="help-keys")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
