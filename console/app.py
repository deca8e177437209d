"""`vmesh console`: the Textual app.

Data flow: per-source workers (poll, tap stream, log stream) feed `MeshData`
and bounded inboxes; one UI tick drains the inboxes and refreshes the view on
screen. A poll is re-armed only when the previous one finished, so a slow
source never piles up requests; a failing source is marked with its reason
and never stops the others (`exit_on_error=False`).

Keys, k9s style: `:` then a view name, the number keys, `/` to filter, `?`
for every key, `q` to quit; the command palette (ctrl+p) lists the views too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from functools import partial

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Input

from console.api import LogLine, TapEvent
from console.checks import CheckOptions, collect_findings
from console.client import AdminClient, AdminError, OperatorCredentials
from console.collect import Poll, poll_source
from console.log_cursor import LogCursor
from console.screens import HelpScreen
from console.sources import Source, SourceProvider, Sources
from console.state import MeshData
from console.streams import StreamEvent, StreamFailure, StreamGap, StreamOpen, follow_source
from console.views import VIEW_CLASSES, Bar, HostsView, View

VIEWS = tuple(VIEW_CLASSES)
POLL_INTERVAL_S = 2.0
SOURCES_INTERVAL_S = 5.0
CHECKS_INTERVAL_S = 15.0
HOSTS_INTERVAL_S = 2.0
TICK_S = 1.0  # redraw rate of the visible view; keys redraw at once
INBOX_BOUND = 20_000

CSS = """
Screen { layout: vertical; }
#crumbs { height: 1; background: $primary-background; color: $text; padding: 0 1; }
#keys { dock: bottom; height: 1; background: $panel; color: $text-muted; padding: 0 1; }
ContentSwitcher { height: 1fr; }
.viewbar { height: 1; color: $text-muted; padding: 0 1; }
#problems, #failovers { height: auto; max-height: 5; padding: 0 1; }
#hint { height: auto; max-height: 4; padding: 0 1; color: $text-muted; }
View { height: 1fr; }
View DataTable { height: 1fr; }
TopView #routes { height: auto; max-height: 40%; }
View Log { height: 1fr; }
#prompt { dock: bottom; height: 3; display: none; }
#prompt.shown { display: block; }
#prompt { border-subtitle-color: $error; }
TapDetail, HelpScreen { align: center middle; }
#detail, #help { width: 100%; max-width: 100; height: auto; max-height: 100%;
                 border: round $primary; background: $surface; padding: 0 1; }
.title { text-style: bold; }
"""


class ConsoleApp(App[None]):
    """The live console over every reachable admin API."""

    TITLE = "vmesh console"
    CSS = CSS
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit"),
        # Ctrl-C quits, as an operator expects in a terminal (Textual would copy instead)
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, id="app.interrupt"),
        Binding("question_mark", "help", "Help", key_display="?", id="app.help"),
        # Priority: handled before the key reaches the table, so that keys typed right
        # after `:` or `/` already land in the prompt (see check_action).
        Binding("colon", "command", "View", key_display=":", priority=True, id="app.command"),
        Binding("slash", "filter", "Filter", key_display="/", priority=True, id="app.filter"),
        Binding("escape", "cancel", "Back", show=False, id="app.cancel"),
        *(
            Binding(str(i), f"show('{name}')", name, show=False, id=f"app.view.{name}")
            for i, name in enumerate(VIEWS, start=1)
        ),
    ]

    def __init__(self, sources: Sources, credentials: OperatorCredentials | None = None, *,
                 first_view: str = "overview", data: MeshData | None = None,
                 live: bool = True, clock: Callable[[], float] | None = None,
                 check_options: CheckOptions | None = None) -> None:
        super().__init__()
        self.sources = sources
        self.credentials = credentials
        self.check_options = check_options or CheckOptions()
        self.first_view = first_view
        self.data = data or (MeshData(clock) if clock else MeshData())
        self.live = live
        self.known: dict[str, Source] = {}
        self._tap_inbox: deque[TapEvent] = deque(maxlen=INBOX_BOUND)
        self._log_inbox: deque[LogLine] = deque(maxlen=INBOX_BOUND)
        self._prompt_mode: str | None = None
        self._clients: dict[str, AdminClient] = {}

    # --- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Bar(id="crumbs")
        with ContentSwitcher(initial=self.first_view):
            for name, cls in VIEW_CLASSES.items():
                yield cls(id=name)
        yield Input(id="prompt")
        yield Bar(id="keys")

    def on_mount(self) -> None:
        self._focus_view()
        self.tick()
        self.set_interval(TICK_S, self.tick)
        if self.live:
            for provider in self.sources.providers:
                self.refresh_provider(provider)
            self.set_interval(HOSTS_INTERVAL_S, self.sample_hosts)
            self.set_timer(1.0, self.run_checks)

    @property
    def view(self) -> View:
        switcher = self.query_one(ContentSwitcher)
        return self.query_one(f"#{switcher.current}", View)

    def _focus_view(self) -> None:
        view = self.view
        focusable = [w for w in view.query("*") if w.can_focus]
        if focusable:
            self._focus_now(focusable[0])
        self._update_keys()

    def _focus_now(self, widget: Widget) -> None:
        """Focus at once: keys already queued (a fast typist, tmux send-keys) go to `widget`.

        `Widget.focus()` defers the change with `call_later`, so keys typed right
        after `/` or `:` would still reach the table.
        """
        self.screen.set_focus(widget)

    def tick(self) -> None:
        """Drain the inboxes into the models and redraw the view on screen."""
        if not self.is_running or self._exit_renderables:
            return  # shutting down: the views may be gone already
        while self._tap_inbox:
            self.data.add_tap(self._tap_inbox.popleft())
        while self._log_inbox:
            self.data.add_log(self._log_inbox.popleft())
        if len(self.screen_stack) > 1:
            return  # a modal is open: no redraw under it
        self.view.refresh_from(self.data)
        self._update_crumbs()

    def _update_keys(self) -> None:
        """The key bar: the keys of the app and of the view on screen, one line that is
        rewritten, not rebuilt (Textual's Footer made new widgets at every view switch)."""
        shown = [b for b in (*self.BINDINGS, *self.view.BINDINGS)
                 if isinstance(b, Binding) and b.show]
        text = Text()
        for binding in shown:
            key = binding.key_display or binding.key.split(",")[0]  # the first of its keys
            text.append(f" {key} ", style="bold reverse")
            text.append(f" {binding.description}  ")
        self.query_one("#keys", Bar).set(text)

    def _update_crumbs(self) -> None:
        statuses = list(self.data.statuses.values())
        down = [s.name for s in statuses if s.state == "unreachable"]
        text = f"vmesh > {self.view.title} | {len(statuses)} proxies"
        if down:
            text += f", {len(down)} unreachable ({', '.join(down[:3])})"
        if self.data.discovery_errors:
            text += f" | discovery: {len(self.data.discovery_errors)} failing"
        text += f" | tap {self.data.tap.received}"
        self.query_one("#crumbs", Bar).set(text)

    # --- sources and workers -------------------------------------------------------------

    def refresh_provider(self, provider: SourceProvider) -> None:
        """List one provider's sources in its own worker (a slow backend delays no other)."""
        self.run_worker(self._refresh_provider(provider), group=f"sources:{provider.label}",
                        exclusive=True, exit_on_error=False)

    async def _refresh_provider(self, provider: SourceProvider) -> None:
        async with self._rearm(SOURCES_INTERVAL_S, partial(self.refresh_provider, provider)):
            await self.sources.refresh(provider)
            self.data.discovery_errors = dict(self.sources.provider_errors)
            self._adopt(self.sources.merged())

    def _adopt(self, sources: list[Source]) -> None:
        """Follow every source in `sources`; a proxy seen before under another name or
        address (found over discovery first, then through its socket) is followed once.

        A source that drops out of discovery stays: it is shown unreachable with the
        reason, not silently forgotten.
        """
        wanted = {s.name: s for s in sources}
        for name, source in list(self.known.items()):
            replacement = wanted.get(name)
            if replacement is not None and _same_endpoint(replacement, source):
                self.known[name] = replacement  # e.g. its instance id is known now
                continue
            now_elsewhere = source.instance is not None and any(
                s.instance == source.instance and s.name != name for s in sources)
            if replacement is not None or now_elsewhere:
                self._retire(source)
        for source in sources:
            if source.name not in self.known:
                self._follow_source(source)

    def _follow_source(self, source: Source) -> None:
        self.known[source.name] = source
        self.data.add_source(source)
        self.start_poll(source)
        self.run_worker(self._follow(source, "/v1/tap", {}), name=f"tap:{source.name}",
                        group=f"tap:{source.name}", exclusive=True, exit_on_error=False)
        self.run_worker(self._follow(source, "/v1/logs", {"follow": "1"}, LogCursor()),
                        name=f"logs:{source.name}", group=f"logs:{source.name}",
                        exclusive=True, exit_on_error=False)

    def _retire(self, source: Source) -> None:
        """Stop following `source` and forget what it said."""
        del self.known[source.name]
        for kind in ("poll", "tap", "logs"):
            self.workers.cancel_group(self, f"{kind}:{source.name}")
        client = self._clients.pop(source.name, None)
        if client is not None:
            self.run_worker(client.aclose(), exit_on_error=False)
        self.data.remove_source(source.name)

    def _following(self, source: Source) -> bool:
        known = self.known.get(source.name)
        return known is not None and _same_endpoint(known, source)

    def start_poll(self, source: Source) -> None:
        """Poll `source` now, unless it was retired meanwhile: the timer of a retired
        source's next poll may come due after the same name was followed at a new address,
        whose poll under way it would cancel (the group is exclusive)."""
        if not self._following(source):
            return
        self.run_worker(self._poll(source), name=f"poll:{source.name}",
                        group=f"poll:{source.name}", exclusive=True, exit_on_error=False)

    async def _poll(self, source: Source) -> None:
        async with self._rearm(POLL_INTERVAL_S, partial(self.start_poll, source)):
            try:
                client = await self._client(source)
            except AdminError as exc:  # no usable operator certificate for a remote source
                self.data.apply_poll(Poll(source, False, exc.reason, exc.detail))
                return
            self.data.apply_poll(await poll_source(source, client=client))

    async def _client(self, source: Source) -> AdminClient:
        """The client that polls `source`: one per source (connections reused), made anew
        when the operator credentials changed or TLS failed since it was made."""
        client = self._clients.get(source.name)
        if client is not None and not client.current():
            del self._clients[source.name]
            await client.aclose()
            client = None
        if client is None:
            client = self._clients[source.name] = AdminClient(source, self.credentials)
        return client

    async def on_unmount(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        await self.sources.aclose()

    @contextlib.asynccontextmanager
    async def _rearm(self, delay_s: float, again: Callable[[], object]) -> AsyncIterator[None]:
        """Schedule `again` once the work inside is over, failed or not, unless cancelled.

        Re-arming only after the previous run ended keeps runs from overlapping
        or piling up behind a slow source; a cancelled run means the app closes.
        """
        cancelled = False
        try:
            yield
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            if not cancelled and self.is_running:
                self.set_timer(delay_s, again)

    async def _follow(self, source: Source, path: str, params: dict[str, str],
                      cursor: LogCursor | None = None) -> None:
        key = f"{source.name}{path}"

        def emit(item: StreamEvent) -> None:
            if isinstance(item, StreamFailure):
                self.data.stream_errors[key] = item.reason
                return
            if isinstance(item, StreamOpen):
                self.data.stream_errors.pop(key, None)
                return
            if isinstance(item, StreamGap):
                self.data.dropped_at_source += item.dropped
                return
            if path == "/v1/tap":
                self._tap_inbox.append(TapEvent.from_json(item.source, item.data))
            else:
                self._log_inbox.append(LogLine.from_json(item.source, item.data))

        await follow_source(source, path, params, self.credentials, emit, cursor=cursor)

    def sample_hosts(self) -> None:
        """Sample this host's proxy processes, when the hosts view is on screen."""
        switcher = self.query_one_optional(ContentSwitcher)
        if switcher is not None and switcher.current == "hosts":
            self.run_worker(self._sample_hosts(), group="hosts", exclusive=True,
                            exit_on_error=False)

    async def _sample_hosts(self) -> None:
        hosts = self.query_one(HostsView)
        hosts.processes = await asyncio.to_thread(hosts.sampler.sample)

    def run_checks(self) -> None:
        self.run_worker(self._checks(), group="checks", exclusive=True, exit_on_error=False)

    async def _checks(self) -> None:
        async with self._rearm(CHECKS_INTERVAL_S, self.run_checks):
            self.data.findings = await collect_findings(
                list(self.data.polls.values()), self.check_options, self.data.now(),
                sources_found=bool(self.known) or not self.sources.all_asked(),
                discovery_errors=self.data.discovery_errors)

    # --- keys ----------------------------------------------------------------------------

    def action_show(self, name: str) -> None:
        """Switch to view `name`."""
        self._hide_prompt()
        self.query_one(ContentSwitcher).current = name
        self._focus_view()
        if name == "hosts" and self.live:
            self.sample_hosts()
        self.tick()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`:` and `/` are plain characters while the prompt or a modal has the keyboard."""
        if action in ("command", "filter"):
            return not (self._prompt_mode or len(self.screen_stack) > 1)
        return True

    def action_command(self) -> None:
        self._show_prompt("command", "", "view: " + " ".join(VIEWS) + "  (q quits)")

    def action_filter(self) -> None:
        view = self.view
        if not view.filter_help:
            self.notify(f"{view.title} has no filter", severity="warning", timeout=2)
            return
        self._show_prompt("filter", view.current_filter(self.data), view.filter_help)

    def action_cancel(self) -> None:
        self._hide_prompt()

    def action_help(self) -> None:
        def keys(bindings: list[Binding]) -> list[tuple[str, str]]:
            return [(b.key_display or b.key, b.description) for b in bindings]

        view = self.view
        app_keys = [b for b in self.BINDINGS if isinstance(b, Binding) and b.show]
        view_keys = [b for b in view.BINDINGS if isinstance(b, Binding)]
        sections = [
            ("global", [*keys(app_keys), ("ctrl+p", "command palette"),
                        ("esc", "close prompt / pane")]),
            (f"view {view.title}", [*keys(view_keys), ("up/down", "move"),
                                    ("pgup/pgdn", "page"), ("home/end", "first / last row")]),
            ("views", [(f"{i} or :{n}", n) for i, n in enumerate(VIEWS, start=1)]),
        ]
        if view.filter_help:
            sections[1][1].append(("/", f"filter: {view.filter_help}"))
        self.push_screen(HelpScreen(sections))

    def _show_prompt(self, mode: str, value: str, placeholder: str) -> None:
        prompt = self.query_one("#prompt", Input)
        self._prompt_mode = mode
        prompt.value = value
        prompt.placeholder = placeholder
        prompt.border_title = ":" if mode == "command" else "/"
        prompt.border_subtitle = ""
        prompt.add_class("shown")
        self._focus_now(prompt)

    def _prompt_error(self, text: str) -> None:
        """Keep the prompt open with what is wrong under it, until corrected or esc."""
        self.query_one("#prompt", Input).border_subtitle = text

    def _hide_prompt(self) -> None:
        prompt = self.query_one("#prompt", Input)
        if prompt.has_class("shown"):
            prompt.remove_class("shown")
            self._prompt_mode = None
            self._focus_view()

    @on(Input.Submitted, "#prompt")
    def _prompt_submitted(self, message: Input.Submitted) -> None:
        text = message.value.strip()
        if self._prompt_mode == "command":
            word = text.removeprefix(":").strip()
            if word in ("q", "quit", "q!"):
                self.exit()
                return
            matches = [v for v in VIEWS if v.startswith(word)] if word else []
            if len(matches) != 1:
                self._prompt_error(f"no view {word!r}: try " + ", ".join(VIEWS))
                return
            self.action_show(matches[0])
        elif self._prompt_mode == "filter":
            try:
                self.view.apply_filter(text, self.data)
            except ValueError as exc:
                self._prompt_error(str(exc))
                return
            self._hide_prompt()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for name in VIEWS:
            yield SystemCommand(f"View: {name}", VIEW_CLASSES[name].__doc__ or name,
                                partial(self.action_show, name))
        yield from super().get_system_commands(screen)


def _same_endpoint(a: Source, b: Source) -> bool:
    return (a.kind, a.address) == (b.kind, b.address)
