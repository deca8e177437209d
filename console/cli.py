"""`vmesh tap|top|stat|endpoints|certs|logs|check|console`: the console's views as plain
text and JSON.

Text output uses linkerd viz column names so people and scripts recognise
them; `--json` prints one JSON object per line (streams stay streams).
Heavy modules are imported inside the handlers.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from vm_mesh.cli import add_command
from vm_mesh.errors import UserError

if TYPE_CHECKING:  # the handlers import these lazily
    from console.api import TapEvent
    from console.app import ConsoleApp
    from console.client import OperatorCredentials
    from console.collect import Poll
    from console.models.listeners import CrowdedListener
    from console.sources import Source, Sources


def _source_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where to read from")
    group.add_argument("--admin", action="append", default=[], metavar="HOST:PORT",
                       help="a proxy's admin API (mTLS); repeatable; also a socket path")
    group.add_argument("--no-local", action="store_true",
                       help="ignore the local proxies' admin sockets")
    group.add_argument("--discover", action="append", default=[], type=Path, metavar="FILE",
                       help="every instance with an admin_port in this static discovery file")
    group.add_argument("--mdns", action="store_true",
                       help="every proxy announced over mDNS (all interfaces)")
    group.add_argument("--mdns-interface", action="append", default=[], metavar="ADDR",
                       help="browse mDNS on the interface with this address only; repeatable")
    group.add_argument("--consul", metavar="URL",
                       help="every proxy in the catalog of the Consul agent at URL")
    group.add_argument("--consul-token", metavar="TOKEN", help="ACL token for --consul")
    group.add_argument("--no-host-discovery", action="store_true",
                       help="do not use the discovery backends of this host's service files")
    group.add_argument("--cert", type=Path, help="operator certificate for remote admin APIs")
    group.add_argument("--key", type=Path, help="operator private key")
    group.add_argument("--ca", type=Path, help="trust bundle to verify remote proxies")


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the console's commands."""
    p = add_command(commands, "console", "Open the live terminal console of the mesh.")
    _source_options(p)
    p.add_argument("--view", default="overview", help="view to open first (overview, tap, ...)")
    p.set_defaults(handler=_console)

    p = add_command(commands, "stat",
                    "Golden metrics per service: success, rps, latency, requests in flight, "
                    "listeners at or near their connection cap.")
    _source_options(p)
    _json_option(p)
    p.set_defaults(handler=_stat)

    p = add_command(commands, "endpoints",
                    "Each proxy's upstreams by datacenter: failovers, refusals, instances, "
                    "breakers, gateways.")
    _source_options(p)
    _json_option(p)
    p.set_defaults(handler=_endpoints)

    p = add_command(commands, "tap", "Stream the requests passing through the proxies.")
    _source_options(p)
    _json_option(p)
    p.add_argument("filter", nargs="*",
                   help="filter terms: svc=NAME path=/PREFIX method=GET status=5xx lat>=250")
    p.add_argument("--max", type=int, default=0, metavar="N", help="stop after N requests")
    p.set_defaults(handler=_tap)

    p = add_command(commands, "top", "Routes ranked by traffic, from a few seconds of tap.")
    _source_options(p)
    _json_option(p)
    p.add_argument("--duration", type=float, default=5.0, metavar="SECONDS",
                   help="how long to watch before printing (default 5)")
    p.add_argument("--sort", default="rps", choices=("rps", "count", "latency", "success"))
    p.set_defaults(handler=_top)

    p = add_command(commands, "certs", "Certificates of every proxy with time left.")
    _source_options(p)
    _json_option(p)
    p.set_defaults(handler=_certs)

    p = add_command(commands, "logs", "The proxies' own log lines, filtered.")
    _source_options(p)
    _json_option(p)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("--level", default="info",
                   choices=("debug", "info", "warning", "error", "critical"),
                   help="lowest level shown (default info)")
    p.add_argument("--service", help="only this proxy")
    p.add_argument("--search", help="only lines containing this text")
    p.set_defaults(handler=_logs)

    p = add_command(commands, "check", "Check certificates, discovery, clocks, ports, services.")
    _source_options(p)
    _json_option(p)
    p.add_argument("--identity", metavar="URL", help="identity service URL (default: mesh.toml)")
    p.set_defaults(handler=_check)

    p = add_command(commands, "targets",
                    "Prometheus scrape targets (file_sd JSON): every proxy discovery lists.")
    _source_options(p)
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="write the targets to FILE, replacing it in one rename (default: stdout)")
    p.add_argument("--every", type=float, metavar="SECONDS",
                   help="keep FILE up to date: look again every SECONDS, rewrite on a change")
    p.set_defaults(handler=_targets)


# --- shared ------------------------------------------------------------------------------


def _credentials(args: argparse.Namespace) -> OperatorCredentials:
    from console.client import OperatorCredentials

    default = OperatorCredentials.default()
    return OperatorCredentials(args.cert or default.cert, args.key or default.key,
                               args.ca or default.ca)


def _source_set(args: argparse.Namespace) -> Sources:
    """Where the command reads from: local sockets, --admin, and discovery (the backends of
    this host's service files, --mdns, --consul, --discover)."""
    from console.discovered import discovery_providers, host_discovery, host_trust_domain
    from console.sources import default_sources
    from vm_mesh.config import Discovery
    from vm_mesh.schema import Invalid, load

    try:
        settings = [] if args.no_host_discovery else host_discovery()
        if args.mdns or args.mdns_interface:
            settings.append(Discovery(backend="mdns", interfaces=tuple(args.mdns_interface)))
        if args.consul:
            consul = {"backend": "consul", "consul_url": args.consul}
            if args.consul_token:
                consul["consul_token"] = args.consul_token
            settings.append(load(Discovery, consul))
        return default_sources(args.admin, local=not args.no_local,
                               discovery=discovery_providers(settings, args.discover,
                                                             host_trust_domain()))
    except Invalid as exc:  # a bad --consul
        raise UserError(f"--consul: {exc.problems[0].message}") from None
    except ValueError as exc:  # a bad --admin
        raise UserError(str(exc)) from None


def _gather_sources(args: argparse.Namespace) -> tuple[list[Source], dict[str, str]]:
    """Every source now, and why each provider that failed (a bad discovery file) gave none."""
    import asyncio

    source_set = _source_set(args)

    async def listed() -> list[Source]:
        try:
            return await source_set.list()
        finally:
            await source_set.aclose()

    sources = asyncio.run(listed())
    return sources, dict(source_set.provider_errors)


def _list_sources(args: argparse.Namespace) -> list[Source]:
    """Every source now; a provider that failed is reported on stderr, not fatal."""
    import sys

    sources, errors = _gather_sources(args)
    for provider, error in errors.items():
        print(f"vmesh: {provider}: {error}", file=sys.stderr)
    return sources


def _sources(args: argparse.Namespace) -> list[Source]:
    sources = _list_sources(args)
    if not sources:
        from vm_mesh import paths

        raise UserError(f"no proxy found: no admin sockets in {paths.run_dir()}, none through "
                        "discovery and no --admin given (start a proxy, or pass --admin "
                        "HOST:PORT, --mdns or --consul URL)")
    return sources


def _report_failures(polls: list[Poll]) -> None:
    import sys

    for poll in polls:
        if not poll.ok:
            print(f"vmesh: {poll.source.name}: {poll.detail} [{poll.reason}]", file=sys.stderr)


def _print_json(obj: object) -> None:
    import json

    print(json.dumps(obj, default=str, separators=(",", ":")), flush=True)


# --- handlers ----------------------------------------------------------------------------


def console_app(args: argparse.Namespace) -> ConsoleApp:
    """The console `vmesh console ARGS` opens; its checks are `vmesh check`'s (`--ca`)."""
    from console.app import VIEWS, ConsoleApp
    from console.checks import CheckOptions

    if args.view not in VIEWS:
        raise UserError(f"unknown view {args.view!r}: choose one of {', '.join(VIEWS)}")
    return ConsoleApp(_source_set(args), _credentials(args), first_view=args.view,
                      check_options=CheckOptions(ca_bundle=args.ca))


def _console(args: argparse.Namespace) -> int:
    import gc

    app = console_app(args)
    # What the imports made (~60,000 objects: modules, classes, functions) lives as long
    # as the process: out of the collector's reach, its full collections (every ~10 s
    # under a busy tap) scan half as much and pause the console half as long.
    gc.collect()
    gc.freeze()
    app.run()
    return 0


def _stat(args: argparse.Namespace) -> int:
    import asyncio

    from console import format as fmt
    from console.collect import poll_all
    from console.models.overview import SourceStatus, stat_rows

    polls = asyncio.run(poll_all(_sources(args), _credentials(args), what=("stats",)))
    statuses = []
    for poll in polls:
        status = SourceStatus(poll.source.name, poll.source.address)
        if poll.ok:
            status.succeeded(poll.at)
            status.ready, status.stats = poll.ready, poll.stats
        else:
            status.failed(poll.reason or "", poll.detail or "")
        statuses.append(status)
    rows = stat_rows(statuses)
    if args.json:
        for row in rows:
            g = row.golden
            _print_json({"name": row.name, "meshed": row.meshed,
                         "success": g.success_rate if g else None, "rps": g.rps if g else None,
                         "latency_p50_ms": g.p50_ms if g else None,
                         "latency_p95_ms": g.p95_ms if g else None,
                         "latency_p99_ms": g.p99_ms if g else None, "tcp_conn": row.tcp_conn,
                         "in_flight": g.in_flight if g else None,
                         "listeners_near_cap": None if row.crowded is None
                         else [c.to_json() for c in row.crowded]})
    else:
        header = ("NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95",
                  "LATENCY_P99", "TCP_CONN", "IN_FLIGHT", "LISTENERS")
        table = [
            (r.name, r.meshed,
             fmt.percent(r.golden.success_rate) if r.golden else "-",
             fmt.rps(r.golden.rps) if r.golden else "-",
             fmt.ms(r.golden.p50_ms) if r.golden else "-",
             fmt.ms(r.golden.p95_ms) if r.golden else "-",
             fmt.ms(r.golden.p99_ms) if r.golden else "-",
             "-" if r.tcp_conn is None else str(r.tcp_conn),
             str(r.golden.in_flight) if r.golden else "-",
             _listeners_cell(r.crowded))
            for r in rows
        ]
        print(fmt.columns(header, table, right=frozenset(range(2, 9))))
    _report_failures(polls)
    return 0 if any(p.ok for p in polls) else 1


def _listeners_cell(crowded: tuple[CrowdedListener, ...] | None) -> str:
    """`ok`, or each listener full or near its cap with its proxy: `web-2 outbound 3/3 full`."""
    if crowded is None:
        return "-"
    return ", ".join(f"{c.proxy} {c.summary}" for c in crowded) or "ok"


def _endpoints(args: argparse.Namespace) -> int:
    import asyncio
    import time

    from console import format as fmt
    from console.collect import poll_all
    from console.models.endpoints import endpoint_json, endpoint_rows, failover_lines

    polls = asyncio.run(poll_all(_sources(args), _credentials(args), what=("endpoints",)))
    upstreams = {p.source.name: p.endpoints for p in polls if p.ok}
    if args.json:
        for proxy in sorted(upstreams):
            for up in sorted(upstreams[proxy], key=lambda u: u.service):
                _print_json(endpoint_json(proxy, up))
    else:
        header = ("PROXY", "UPSTREAM", "DC", "INSTANCE", "ADDRESS", "STATE", "DETAIL")
        print(fmt.columns(header, [
            (r.proxy, r.upstream, r.datacenter, r.instance or "-", r.address, r.state,
             r.detail) for r in endpoint_rows(upstreams)]))
        for line in failover_lines(upstreams, time.time()):
            print(f"failover {line}")
    _report_failures(polls)
    return 0 if any(p.ok for p in polls) else 1


def tap_lines(event: TapEvent) -> list[str]:
    """linkerd-style `req`/`rsp`/`end` lines of one tap event.

    The id names the proxy: a proxy's own ids already do (`api-1:340`), others
    get the source's name in front, so that ids of several proxies never clash.
    """
    ident = event.id if ":" in event.id else f"{event.proxy}:{event.id}"
    tls = "true" if event.tls else "no_identity"
    src = event.src_addr or "-"
    dst = event.dst_addr or event.destination_name
    lines = [
        f"req id={ident} proxy={event.direction[:3]} src={src} dst={dst} tls={tls} "
        f":method={event.method or '-'} :authority={event.authority or '-'} "
        f":path={event.path or '-'}"
    ]
    latency_us = round(event.latency_ms * 1000)
    if event.status is not None:
        lines.append(f"rsp id={ident} proxy={event.direction[:3]} src={src} dst={dst} tls={tls} "
                     f":status={event.status} latency={latency_us}µs")
    end = f"error={event.error}" if event.error else "grpc-status=-"
    lines.append(f"end id={ident} proxy={event.direction[:3]} src={src} dst={dst} tls={tls} "
                 f"{end} duration={latency_us}µs response-length={event.bytes_out}B")
    return lines


def _tap(args: argparse.Namespace) -> int:
    import asyncio

    from console.api import TapEvent
    from console.models.tap import TapFilter
    from console.stream_report import StreamReport
    from console.streams import MergedStream

    try:
        tap_filter = TapFilter.parse(" ".join(args.filter))
    except ValueError as exc:
        raise UserError(f"tap filter: {exc}") from None
    sources = _sources(args)
    report = StreamReport(len(sources), "requests (tap rate limit or slow reader)")

    async def run() -> int:
        shown = 0
        stream = MergedStream(sources, "/v1/tap", tap_filter.server_params(), _credentials(args),
                              untrusted_final=True)
        async for event in stream:
            item = report.item(event)
            if item is None:
                if report.all_given_up:
                    return 1
                continue
            tap_event = TapEvent.from_json(item.source, item.data)
            if not tap_filter.matches(tap_event):
                continue
            if args.json:
                _print_json({"proxy": item.source, **item.data})
            else:
                print("\n".join(tap_lines(tap_event)), flush=True)
            shown += 1
            if args.max and shown >= args.max:
                return 0
        return report.exit_code

    return asyncio.run(run())


def _top(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import time

    from console import format as fmt
    from console.api import TapEvent
    from console.models.top import TopTable
    from console.stream_report import StreamReport
    from console.streams import MergedStream

    sources = _sources(args)
    table = TopTable(watched_since=time.time())
    report = StreamReport(len(sources), "requests (tap rate limit or slow reader)")

    async def watch() -> None:
        async for event in MergedStream(sources, "/v1/tap", {}, _credentials(args),
                                        untrusted_final=True):
            item = report.item(event)
            if item is not None:
                table.add(TapEvent.from_json(item.source, item.data))

    async def run() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watch(), args.duration)

    asyncio.run(run())
    now = time.time()
    rows = table.ranked(args.sort, now)
    if args.json:
        for r in rows:
            _print_json({"source": r.source, "destination": r.destination, "method": r.method,
                         "path": r.path, "count": r.count, "rps": r.rps(now),
                         "best_ms": r.best_ms, "worst_ms": r.worst_ms, "last_ms": r.last_ms,
                         "success_rate": r.success_rate})
        return report.exit_code
    header = ("Source", "Destination", "Method", "Path", "Count", "RPS", "Best", "Worst", "Last",
              "Success Rate")
    print(fmt.columns(header, [
        (r.source, r.destination, r.method, r.path, str(r.count),
         fmt.rps(r.rps(now)), fmt.ms(r.best_ms), fmt.ms(r.worst_ms),
         fmt.ms(r.last_ms), fmt.percent(r.success_rate))
        for r in rows
    ], right=frozenset(range(4, 10))))
    return report.exit_code


def _certs(args: argparse.Namespace) -> int:
    import asyncio
    from datetime import UTC, datetime

    from console import format as fmt
    from console.collect import poll_all
    from console.models.certs import cert_rows

    polls = asyncio.run(poll_all(_sources(args), _credentials(args), what=("certs",)))
    now = datetime.now(UTC)
    rows = cert_rows({p.source.name: p.certs for p in polls if p.ok and p.certs}, now)
    if args.json:
        for r in rows:
            _print_json({"kind": r.cert.kind, "owners": list(r.owners), "subject": r.cert.subject,
                         "san": list(r.cert.san), "dns": list(r.cert.dns),
                         "serial": r.cert.serial,
                         "not_before": r.cert.not_before.isoformat(),
                         "not_after": r.cert.not_after.isoformat(), "state": r.health.label,
                         "next_renewal": r.next_renewal.isoformat() if r.next_renewal else None})
    else:
        header = ("KIND", "OWNER", "IDENTITY", "NOT_AFTER", "LEFT", "STATE", "NEXT_RENEWAL",
                  "DNS")
        print(fmt.columns(header, [
            (r.cert.kind,
             ",".join(r.owners) if r.cert.kind == "leaf" else f"{len(r.owners)} proxies",
             (r.cert.san[0] if r.cert.san else r.cert.subject),
             f"{r.cert.not_after:%Y-%m-%d %H:%M}", r.left, r.health.label,
             f"{r.next_renewal:%Y-%m-%d %H:%M}" if r.next_renewal else "-",
             ",".join(r.cert.dns) or "-")
            for r in rows
        ]))
    _report_failures(polls)
    return 1 if any(r.health.failing for r in rows) or not any(p.ok for p in polls) else 0


def _logs(args: argparse.Namespace) -> int:
    import asyncio

    from console.api import LogLine
    from console.models.logs import LogFilter
    from console.stream_report import StreamReport
    from console.streams import MergedStream

    sources = [s for s in _sources(args) if not args.service or s.name == args.service]
    if not sources:
        raise UserError(f"no proxy named {args.service!r} found")
    log_filter = LogFilter(args.level, args.service, args.search)
    params = {"level": args.level, **({"follow": "1"} if args.follow else {})}
    report = StreamReport(len(sources), "log lines")

    async def run() -> int:
        stream = MergedStream(sources, "/v1/logs", params, _credentials(args),
                              retry=args.follow, resume=args.follow, untrusted_final=True)
        async for event in stream:
            item = report.item(event)
            if item is None:
                continue
            line = LogLine.from_json(item.source, item.data)
            if log_filter.matches(line):
                if args.json:
                    _print_json({"proxy": item.source, **item.data})
                else:
                    print(line.render(), flush=True)
        return report.exit_code

    return asyncio.run(run())


def _targets(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import sys

    from console.targets import file_sd, render, write_atomically

    if args.every is not None and args.out is None:
        raise UserError("--every needs --out FILE")
    args.no_local = True  # Prometheus reaches proxies over TCP; admin sockets are for this host
    source_set = _source_set(args)

    async def follow() -> None:
        written = None
        try:
            while True:
                groups = file_sd(await source_set.list())
                for provider, error in source_set.provider_errors.items():
                    print(f"vmesh: {provider}: {error}", file=sys.stderr)
                if not groups:
                    print("vmesh: no proxy with an admin port found through discovery",
                          file=sys.stderr)
                text = render(groups)
                if args.out is None:
                    sys.stdout.write(text)
                    return
                if text != written:  # a failing backend keeps its last answer: no flapping
                    write_atomically(args.out, text)
                    written = text
                if args.every is None:
                    return
                await asyncio.sleep(args.every)
        finally:
            await source_set.aclose()

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends --every; the file is whole
        asyncio.run(follow())
    return 0


def _check(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses

    from console.checks import CheckOptions, run_checks
    from console.models.checks import exit_code

    sources, discovery_errors = _gather_sources(args)
    findings = asyncio.run(run_checks(sources, _credentials(args),
                                      CheckOptions(identity_url=args.identity, ca_bundle=args.ca),
                                      discovery_errors=discovery_errors))
    for finding in findings:
        if args.json:
            _print_json({**dataclasses.asdict(finding), "status": finding.status.value})
        else:
            print(finding.line())
    return exit_code(findings)
