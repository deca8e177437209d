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

    def compose(self) -> ComposeResult:
        width = max(len(label) for label, _ in self.event.fields())
        text = "\n".join(f"{label:>{width}}  {value}" for label, value in self.event.fields())
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
