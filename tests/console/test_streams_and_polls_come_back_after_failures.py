"""Tap, logs and polls of a source come back by themselves after it failed: after a TLS failure
once the operator's files are renewed, after a restart of the proxy, and they try a proxy that
is gone less and less often."""

from __future__ import annotations

import time
from itertools import pairwise
from pathlib import Path

from textual.widgets import DataTable

from console.app import ConsoleApp
from console.client import OperatorCredentials
from console.collect import poll_source
from console.sources import Source, default_sources
from console.streams import MergedStream, StreamFailure
from console.views import Bar, TapView
from identity import pki
from tests.console.pilot import table_rows, until
from tests.console.test_cli_twins_print_columns_and_json import vmesh
from vm_mesh import paths


def operator_with_proxy(start_admin) -> tuple[OperatorCredentials, str]:
    """`vmesh identity operator ann`'s files, and the address of a remote proxy of that CA."""
    assert vmesh("identity", "init").returncode == 0
    assert vmesh("identity", "operator", "ann").returncode == 0
    edge = start_admin("edge", tls=True, rate=20, ca_dir=paths.state_dir("identity"))
    return OperatorCredentials.default(), f"127.0.0.1:{edge.port}"


def tap_bar(console: ConsoleApp) -> str:
    return str(console.query_one(TapView).query_one(Bar).render())


def row_state(console: ConsoleApp, name: str) -> str | None:
    rows = {r[0].strip(): r for r in table_rows(console.view.query_one(DataTable))}
    return rows[name][1] if name in rows else None


async def test_tap_and_polls_come_back_once_the_operator_bundle_is_renewed(
        start_admin, vmesh_root: Path) -> None:
    credentials, address = operator_with_proxy(start_admin)
    bundle = credentials.ca.read_bytes()
    # the bundle of before a rotation: it does not trust the proxy's certificate
    pki.write_file(credentials.ca, pki.cert_pem(pki.create_anchor("vmesh.local").cert))
    console = ConsoleApp(default_sources([address], local=False))
    async with console.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: row_state(console, address) == "unreachable", "the row")
        assert console.data.polls[address].reason == "admin.tls_untrusted"
        await pilot.press("3")
        await until(pilot, lambda: f"no tap from {address}" in tap_bar(console), "the tap note")
        assert console.data.stream_errors[f"{address}/v1/tap"] == "admin.tls_untrusted"

        pki.write_file(credentials.ca, bundle)  # `vmesh identity operator` ran again
        await pilot.press("1")
        await until(pilot, lambda: row_state(console, address) == "ready", "the polls back")
        await pilot.press("3")
        await until(pilot, lambda: console.data.tap.received > 0, "tap events of the proxy")
        await until(pilot, lambda: "no tap from" not in tap_bar(console), "the note gone")


async def test_the_operator_files_are_read_once_until_they_change(start_admin,
                                                                   vmesh_root: Path) -> None:
    credentials, address = operator_with_proxy(start_admin)
    first = credentials.ssl_context()
    assert credentials.ssl_context() is first  # not read and parsed for every connection
    assert vmesh("identity", "operator", "ann").returncode == 0  # renewed
    renewed = credentials.ssl_context()
    assert renewed is not first
    assert credentials.ssl_context() is renewed
    poll = await poll_source(Source(address, "tcp", address), credentials)
    assert poll.ok, poll.detail


async def test_the_note_of_a_broken_tap_goes_once_the_stream_is_open_again(
        start_admin) -> None:
    api = start_admin("api", rate=0.001)  # one request at its start, then none for 1,000 s
    console = ConsoleApp(default_sources())
    async with console.run_test(size=(160, 48)) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: "api" in console.known, "api followed")
        api.kill()
        await until(pilot, lambda: "no tap from api" in tap_bar(console), "the broken tap shown")
        start_admin("api", rate=0.001)  # restarted: its one request is over before a tap
        await until(pilot, lambda: "no tap from" not in tap_bar(console), "the note gone")
        assert console.data.tap.received == 0  # no event cleared it: the stream is open again


async def test_a_proxy_that_is_gone_is_tried_less_and_less_often(start_admin) -> None:
    api = start_admin("api")
    api.kill()  # its socket is left: every attempt is refused
    failed_at: list[float] = []
    async for item in MergedStream([Source("api", "unix", str(api.socket))], "/v1/tap", {}):
        assert isinstance(item, StreamFailure) and item.reason == "admin.connect_refused"
        failed_at.append(time.monotonic())
        if len(failed_at) == 4:
            break
    gaps = [later - earlier for earlier, later in pairwise(failed_at)]
    assert 1 <= gaps[0] < 2 <= gaps[1] < 4 <= gaps[2] < 8, gaps  # doubled each time


async def test_operator_files_caught_half_renewed_are_a_tls_failure(start_admin,
                                                                    vmesh_root: Path) -> None:
    credentials, address = operator_with_proxy(start_admin)
    # the new key is written, the certificate for it not yet
    pki.write_private(credentials.key, pki.key_pem(pki.generate_key()))
    poll = await poll_source(Source(address, "tcp", address), credentials)
    assert (poll.ok, poll.reason) == (False, "admin.tls_error")
    assert f"operator credentials {credentials.cert}" in (poll.detail or "")
