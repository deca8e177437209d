"""The console's views: one widget each, rendering a view model from `MeshData`.

Each view has `refresh_from(data)`, called by the app's tick for the view on
screen only; it changes the DataTable as little as possible, inside one
`batch_update()`: only changed cells when the rows and their order are the
same (`update_cell`), otherwise `clear()` and the rows again with their keys.
The tap view, a "last N" list that shifts with every event, keeps its rows in
place and rewrites the cells of the rows on screen only (the others when they
scroll into view): adding or clearing rows makes the table measure every cell
and the screen re-lay out, which at 1,000 events/s cost most of the
console's time. Cells are `Text`, never markup strings: no markup
parsing per cell, and a path like `/[b]x` shows as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Log, Static

from console import format as fmt
from console.api import LogLine, TapEvent, common_name, short_identity
from console.hosts import HostSampler, ProxyProcess
from console.models.certs import cert_rows, format_span, timeline_bar
from console.models.checks import Status
from console.models.endpoints import endpoint_rows, failover_lines
from console.models.logs import LogFilter, next_level
from console.models.overview import crowded_listeners, overview_rows
from console.models.routes import route_rows
from console.models.tap import TapFilter
from console.models.top import SORT_KEYS
from console.state import MeshData

Cell = str | Text
Row = tuple[str, Sequence[Cell]]


def _text(cell: Cell) -> Text:
    return cell if isinstance(cell, Text) else Text(cell)


def sync_table(table: DataTable, rows: Sequence[Row]) -> None:
    """Make `table` show `rows` (key, cells), touching only what changed."""
    seen: dict[str, int] = {}
    unique: list[Row] = []
    for key, cells in rows:  # keys must be unique: number repeats rather than fail
        seen[key] = seen.get(key, 0) + 1
        unique.append((key if seen[key] == 1 else f"{key}#{seen[key]}",
                       [_text(cell) for cell in cells]))
    rows = unique
    keys = [key for key, _ in rows]
    current = [row_key.value for row_key in table.rows]
    with table.app.batch_update():
        if keys == current:
            columns = list(table.columns.items())
            for key, cells in rows:
                for (column, spec), cell in zip(columns, cells, strict=True):
                    if table.get_cell(key, column) != cell:  # an auto-width column may grow
                        table.update_cell(key, column, cell, update_width=spec.auto_width)
            return
        cursor_key = None
        if table.row_count and 0 <= table.cursor_row < table.row_count:
            cursor_key = current[table.cursor_row]
        table.clear()
        for key, cells in rows:
            table.add_row(*cells, key=key)
        if cursor_key in keys:
            table.move_cursor(row=keys.index(cursor_key), animate=False)


def write_row(table: DataTable, key: str, cells: Sequence[Cell]) -> None:
    """Rewrite the cells of row `key` that differ from `cells` (no re-measuring, no layout)."""
    for column, cell in zip(table.columns, cells, strict=True):
        cell = _text(cell)
        if table.get_cell(key, column) != cell:
            table.update_cell(key, column, cell)


class Bar(Static):
    """A line of text that is redrawn only when it changes, without a new layout
    (its height is fixed by the stylesheet)."""

    relayout = False

    def __init__(self, text: str = "", **kwargs: object) -> None:
        super().__init__(Text(text), **kwargs)  # type: ignore[arg-type]
        self._shown: Text = Text(text)

    def set(self, text: str | Text) -> None:
        text = _text(text)
        if text != self._shown:
            self._shown = text
            self.update(text, layout=self.relayout)


class Note(Bar):
    """Lines of text of any height, redrawn (and laid out again) only when they change."""

    relayout = True


def styled(label: str, style: str) -> Text:
    return Text(label, style=f"bold {style}")


class View(Vertical):
    """Base of every view: a title, a refresh hook and an optional filter."""

    title = ""
    filter_help = ""  # non-empty when `/` filters this view

    def refresh_from(self, data: MeshData) -> None:
        raise NotImplementedError

    def apply_filter(self, text: str, data: MeshData) -> None:
        """Apply what was typed after `/`; ValueError with the reason when it is wrong."""
        raise ValueError("this view has no filter")

    def current_filter(self, data: MeshData) -> str:
        return ""


def _table(*columns: tuple[str, int | None]) -> DataTable[Cell]:
    table: DataTable[Cell] = DataTable(cursor_type="row", zebra_stripes=False)
    for label, width in columns:
        table.add_column(label, key=label, width=width)
    return table


class OverviewView(View):
    """Every service with its golden metrics, its instances under it; unreachable ones with
    their reason, and listeners full or near their connection cap."""

    title = "overview"
    HEALTH_STYLES = {"ok": "green", "degraded": "yellow", "down": "red", "pending": ""}

    def compose(self) -> ComposeResult:
        yield _table(("NAME", 10), ("STATE", 11), ("RPS", 6), ("SUCCESS", 7), ("P50", 6),
                     ("P99", 6), ("VERSION", 7), ("SEEN", 7), ("ADDRESS", None))
        yield Note(id="problems")

    def refresh_from(self, data: MeshData) -> None:
        now = data.clock()
        rows: list[Row] = []
        for row in overview_rows(list(data.statuses.values())):
            golden = row.golden
            name = Text(row.name, style="bold") if row.service else Text(
                f"  {row.name}" if row.nested else row.name)
            rows.append((row.key, (
                name,
                styled(row.state, self.HEALTH_STYLES[row.health]),
                fmt.rps(golden.rps) if golden else "-",
                fmt.percent(golden.success_rate) if golden else "-",
                fmt.ms(golden.p50_ms) if golden else "-",
                fmt.ms(golden.p99_ms) if golden else "-",
                row.version or "-",
                fmt.ago(now - row.last_ok) if row.last_ok else "never",
                fmt.address(row.address),
            )))
        sync_table(self.query_one(DataTable), rows)
        problems = [
            Text.assemble((f"{s.name}: ", "bold red"), f"{s.detail} [{s.reason}]")
            for s in data.unreachable()
        ]
        problems += [
            Text.assemble((f"{label}: ", "bold red"), f"{error} [discovery.source_unreachable]")
            for label, error in sorted(data.discovery_errors.items())
        ]
        problems += [
            Text.assemble((f"{c.proxy}: ", f"bold {'red' if c.saturated else 'yellow'}"),
                          f"listener {c.listener} {c.message} [{c.reason}]")
            for c in crowded_listeners(list(data.statuses.values()))
        ]
        self.query_one("#problems", Note).set(Text("\n").join(problems))


class TopView(View):
    """Requests ranked live by source, destination, method and path, like `linkerd viz
    top` (from tap; `s` changes the ranking), and under them every route and upstream of
    `/v1/stats` with its requests in flight now."""

    title = "top"
    BINDINGS = [Binding("s", "cycle_sort", "Sort", id="top.sort")]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.sort_by = "rps"
        self._data: MeshData | None = None

    def compose(self) -> ComposeResult:
        yield Bar(classes="viewbar")
        yield _table(("SOURCE", 8), ("DEST", 8), ("METH", 4), ("PATH", 13), ("COUNT", 5),
                     ("RPS", 5), ("BEST", 5), ("WORST", 5), ("SUCCESS", 7), ("LAST", 5))
        yield Bar(id="routes-bar", classes="viewbar")
        routes = _table(("DIR", 3), ("SERVICE", 10), ("ROUTE", 10), ("RPS", 6), ("SUCCESS", 7),
                        ("P50", 6), ("P99", 6), ("IN_FLIGHT", 9))
        routes.id = "routes"
        yield routes

    def action_cycle_sort(self) -> None:
        self.sort_by = SORT_KEYS[(SORT_KEYS.index(self.sort_by) + 1) % len(SORT_KEYS)]
        if self._data:
            self.refresh_from(self._data)

    def refresh_from(self, data: MeshData) -> None:
        self._data = data
        now = data.clock()
        self.query_one(Bar).set(f"sorted by {self.sort_by} (s to change) · "
                                f"{len(data.top)} routes")
        rows: list[Row] = [
            ("|".join(r.key), (r.source, r.destination, r.method, r.path, str(r.count),
                               fmt.rps(r.rps(now)), fmt.ms(r.best_ms), fmt.ms(r.worst_ms),
                               fmt.percent(r.success_rate), fmt.ms(r.last_ms)))
            for r in data.top.ranked(self.sort_by, now)[:200]
        ]
        sync_table(self.query_one(DataTable), rows)
        routes = route_rows(list(data.statuses.values()))
        self.query_one("#routes-bar", Bar).set(
            f"routes (inb) and upstreams (out) of /v1/stats, all proxies: {len(routes)}")
        sync_table(self.query_one("#routes", DataTable), [
            (r.key, (r.direction[:3], r.service, r.route, fmt.rps(r.golden.rps),
                     fmt.percent(r.golden.success_rate), fmt.ms(r.golden.p50_ms),
                     fmt.ms(r.golden.p99_ms), str(r.golden.in_flight)))
            for r in routes
        ])


class TapView(View):
    """The newest requests across all proxies; `/` filters, `p` pauses, enter shows one."""

    title = "tap"
    filter_help = "svc=NAME path=/PREFIX method=GET status=5xx|404|>=400 lat>=MS"
    BINDINGS = [
        Binding("p,space", "toggle_pause", "Pause", id="tap.pause"),
        Binding("enter", "detail", "Detail", id="tap.detail"),
        Binding("c", "clear_filter", "Clear filter", id="tap.clear"),
    ]
    ROWS_SHOWN = 200

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._data: MeshData | None = None
        self._shown_at: tuple[int, str] | None = None
        self._events: list[TapEvent] = []
        self._stale: set[int] = set()  # rows whose cells are older than `_events`

    def on_mount(self) -> None:
        self.watch(self.query_one(DataTable), "scroll_y", self._write_stale_rows, init=False)

    def compose(self) -> ComposeResult:
        yield Bar(classes="viewbar")
        yield _table(("TIME", 8), ("PROXY", 8), ("DIR", 3), ("METH", 5), ("PATH", 16),
                     ("ST", 3), ("LATENCY", 7), ("DST", 8), ("TLS", 3))

    def refresh_from(self, data: MeshData) -> None:
        self._data = data
        tap = data.tap
        bar = (f"{'PAUSED · ' if tap.paused else ''}filter: {str(tap.filter) or 'none'} · "
               f"{tap.received} events, {len(tap)} kept")
        if data.dropped_at_source:
            bar += f" · {data.dropped_at_source} dropped by proxies"
        failing = _stream_failures(data, "/v1/tap")
        if failing:
            bar += f" · no tap from {failing}"
        self.query_one(Bar).set(bar)
        marker = (tap.received if not tap.paused else -1, str(tap.filter))
        if marker == self._shown_at:
            return
        self._shown_at = marker
        table = self.query_one(DataTable)
        selected = None  # on the top row the view follows the newest event
        if self._events and 0 < table.cursor_row < len(self._events):
            selected = self._events[table.cursor_row]
        self._events = tap.visible(self.ROWS_SHOWN)
        with self.app.batch_update():
            if len(self._events) < table.row_count:
                table.clear()  # a narrower filter: start again
            kept = table.row_count
            self._stale = set(range(kept))
            for index in range(kept, len(self._events)):  # appended rows are measured once
                table.add_row(*map(_text, _tap_cells(self._events[index])), key=str(index))
            self._write_stale_rows()
            if selected in self._events:
                table.move_cursor(row=self._events.index(selected), animate=False)

    def _write_stale_rows(self) -> None:
        """Bring the rows on screen up to date (called after a refresh and on scrolling)."""
        table = self.query_one(DataTable)
        top = int(table.scroll_y)
        for index in sorted(self._stale.intersection(range(top, top + table.size.height))):
            write_row(table, str(index), _tap_cells(self._events[index]))
            self._stale.discard(index)

    def action_toggle_pause(self) -> None:
        if self._data is None:
            return
        tap = self._data.tap
        tap.resume() if tap.paused else tap.pause()
        self.refresh_from(self._data)

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_detail()

    def action_detail(self) -> None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return
        if 0 <= table.cursor_row < len(self._events):
            from console.screens import TapDetail

            self.app.push_screen(TapDetail(self._events[table.cursor_row]))

    def action_clear_filter(self) -> None:
        if self._data is not None:
            self._data.tap.filter = TapFilter()
            self.refresh_from(self._data)

    def apply_filter(self, text: str, data: MeshData) -> None:
        data.tap.filter = TapFilter.parse(text)
        self.refresh_from(data)

    def current_filter(self, data: MeshData) -> str:
        return str(data.tap.filter)


def _tap_cells(e: TapEvent) -> tuple[Cell, ...]:
    status = "-" if e.status is None else str(e.status)
    return (datetime.fromtimestamp(e.ts, UTC).strftime("%H:%M:%S"),
            e.proxy, e.direction[:3], e.method or "-", e.path or "-",
            status if e.ok else styled(status, "red"),
            fmt.ms(e.latency_ms), e.destination_name, "yes" if e.tls else "no")


class EndpointsView(View):
    """Per proxy, each upstream with its datacenter and state (a failover: where to, why and
    since when), and each instance it balances over with its breaker and gateway."""

    title = "endpoints"
    HEALTH_STYLES = {"ok": "green", "degraded": "yellow", "down": "red"}

    def compose(self) -> ComposeResult:
        yield Bar("upstreams of each proxy, instances under them · DC local: the proxy's own "
                  "site", classes="viewbar")
        yield _table(("PROXY", 8), ("UPSTREAM", 16), ("DC", 6), ("ADDRESS", 15),
                     ("STATE", 9), ("DETAIL", None))
        yield Note(id="failovers")

    def refresh_from(self, data: MeshData) -> None:
        rows: list[Row] = []
        for row in endpoint_rows(data.endpoints):
            rows.append((row.key, (
                "" if row.instance else row.proxy,
                f"  {row.instance}" if row.instance else Text(row.upstream, style="bold"),
                row.datacenter,
                row.address,
                styled(row.state, self.HEALTH_STYLES[row.health]),
                row.detail,
            )))
        sync_table(self.query_one(DataTable), rows)
        self.query_one("#failovers", Note).set(Text("\n").join(
            Text.assemble(("failover ", "bold yellow"), line)
            for line in failover_lines(data.endpoints, data.clock())))


class EdgesView(View):
    """Who talks to whom, with identities and whether mTLS was on."""

    title = "edges"

    def compose(self) -> ComposeResult:
        yield _table(("SRC", 10), ("DST", 10), ("CLIENT_ID", 14), ("SERVER_ID", 14),
                     ("SECURED", 7), ("REQS", 6))

    def refresh_from(self, data: MeshData) -> None:
        rows: list[Row] = []
        for edge in data.edges.rows():
            tls_style = {"yes": "green", "no": "red", "partial": "yellow"}[edge.tls]
            # A proxy's own outbound requests carry no client ID: it is the proxy's identity.
            own = data.certs.get(edge.src)
            client = edge.client_id or (own.identity if own else None)
            rows.append((f"{edge.src}|{edge.dst}", (
                edge.src, edge.dst, short_identity(client) or "-",
                short_identity(edge.server_id) or "-", styled(edge.tls, tls_style),
                str(edge.requests))))
        sync_table(self.query_one(DataTable), rows)


class CertsView(View):
    """Anchors, issuers and leaves on a lifetime timeline, coloured by time left, with the
    DNS names each carries."""

    title = "certs"

    def compose(self) -> ComposeResult:
        yield Bar("timeline: # elapsed, - left, | renewal point (70%)", classes="viewbar")
        yield _table(("KIND", 6), ("OWNER", 8), ("IDENTITY", 11), ("TIMELINE", 10),
                     ("LEFT", 10), ("STATE", 8), ("RENEWAL", 11), ("DNS", None))

    def refresh_from(self, data: MeshData) -> None:
        now = data.now()
        rows: list[Row] = []
        for row in cert_rows(data.certs, now):
            cert = row.cert
            owner = ",".join(row.owners) if cert.kind == "leaf" else f"{len(row.owners)} prx"
            ident = short_identity(cert.san[0]) if cert.kind == "leaf" and cert.san else None
            ident = ident or common_name(cert.subject)
            rows.append((f"{cert.kind}|{','.join(row.owners)}|{cert.serial}", (
                cert.kind, owner, ident or "-", timeline_bar(cert, now, 10),
                styled(row.left, row.health.style), styled(row.health.label, row.health.style),
                f"{row.next_renewal:%m-%d %H:%M}" if row.next_renewal else "-",
                ",".join(cert.dns) or "-",
            )))
        sync_table(self.query_one(DataTable), rows)


class LogsView(View):
    """The proxies' log lines, following; `/` searches, `l` changes the lowest level."""

    title = "logs"
    filter_help = "svc=NAME level=warning WORDS"
    BINDINGS = [
        Binding("l", "cycle_level", "Level", id="logs.level"),
        Binding("f", "toggle_follow", "Follow", id="logs.follow"),
    ]
    MAX_LINES = 2_000

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._data: MeshData | None = None
        self._written: LogLine | None = None

    def compose(self) -> ComposeResult:
        yield Bar(classes="viewbar")
        yield Log(max_lines=self.MAX_LINES, auto_scroll=True)

    def refresh_from(self, data: MeshData) -> None:
        self._data = data
        log = self.query_one(Log)
        bar = f"filter: {data.logs.filter} · {'following' if log.auto_scroll else 'not following'}"
        failing = _stream_failures(data, "/v1/logs")
        if failing:
            bar += f" · no logs from {failing}"
        self.query_one(Bar).set(bar)
        lines = data.logs.visible(self.MAX_LINES)
        if self._written is not None and self._written in lines:
            start = len(lines) - lines[::-1].index(self._written)
            new = lines[start:]
        else:
            log.clear()
            new = lines
        if new:
            log.write_lines([line.render() for line in new])
            self._written = new[-1]

    def _rewrite(self) -> None:
        self._written = None
        if self._data:
            self.refresh_from(self._data)

    def action_cycle_level(self) -> None:
        if self._data:
            f = self._data.logs.filter
            self._data.logs.filter = LogFilter(next_level(f.min_level), f.service, f.search)
            self._rewrite()

    def action_toggle_follow(self) -> None:
        log = self.query_one(Log)
        log.auto_scroll = not log.auto_scroll
        if self._data:
            self.refresh_from(self._data)

    def apply_filter(self, text: str, data: MeshData) -> None:
        data.logs.filter = LogFilter.parse(text, data.logs.filter.min_level)
        self._rewrite()

    def current_filter(self, data: MeshData) -> str:
        f = data.logs.filter
        return " ".join(x for x in (f"svc={f.service}" if f.service else "", f.search or "") if x)


class HostsView(View):
    """The proxy processes of this host: CPU, memory, threads, uptime (psutil)."""

    title = "hosts"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.sampler = HostSampler()
        self.processes: list[ProxyProcess] = []

    def compose(self) -> ComposeResult:
        yield Bar("proxy processes on this host", classes="viewbar")
        yield _table(("PID", 7), ("SERVICE", 12), ("INSTANCE", 14), ("CPU%", 6), ("RSS", 9),
                     ("THREADS", 7), ("UPTIME", 8))

    def refresh_from(self, data: MeshData) -> None:
        rows: list[Row] = [
            (str(p.pid), (str(p.pid), p.service, p.instance or "?", f"{p.cpu_percent:.1f}",
                          fmt.size(p.rss_bytes), str(p.threads),
                          format_span(timedelta(seconds=p.uptime_s))))
            for p in self.processes
        ]
        sync_table(self.query_one(DataTable), rows)


class ChecksView(View):
    """The findings of `vmesh check`, worst first; the hint of the selected line below."""

    title = "checks"

    def compose(self) -> ComposeResult:
        yield _table(("STATUS", 6), ("CHECK", 9), ("TARGET", 22), ("MESSAGE", None))
        yield Note(id="hint")

    def refresh_from(self, data: MeshData) -> None:
        order = {Status.FAIL: 0, Status.WARN: 1, Status.OK: 2}
        findings = sorted(data.findings, key=lambda f: order[f.status])
        colours = {Status.FAIL: "red", Status.WARN: "yellow", Status.OK: "green"}
        rows: list[Row] = [
            (f"{f.check}|{f.target}|{f.reason}",
             (styled(f.status.value, colours[f.status]), f.check, f.target, f.message))
            for f in findings
        ]
        table = self.query_one(DataTable)
        sync_table(table, rows)
        hint = ""
        if findings and 0 <= table.cursor_row < len(findings):
            chosen = findings[table.cursor_row]
            hint = f"{chosen.target}: {chosen.message}\n{chosen.reason}"
            if chosen.hint and chosen.status is not Status.OK:
                hint += f" · hint: {chosen.hint}"
        self.query_one("#hint", Note).set(hint)


def _stream_failures(data: MeshData, path: str) -> str:
    """The sources whose stream of `path` is broken (and tried again), each with its reason:
    `api (admin.too_many_streams), web (admin.connect_refused)`."""
    return ", ".join(f"{key.removesuffix(path)} ({reason})"
                     for key, reason in sorted(data.stream_errors.items()) if key.endswith(path))


VIEW_CLASSES: dict[str, type[View]] = {
    "overview": OverviewView,
    "top": TopView,
    "tap": TapView,
    "edges": EdgesView,
    "certs": CertsView,
    "logs": LogsView,
    "hosts": HostsView,
    "checks": ChecksView,
    "endpoints": EndpointsView,
}
