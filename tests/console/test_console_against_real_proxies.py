"""`vmesh console` against real `vmesh proxy run` processes carrying real mTLS traffic.

The mesh and its traffic are the `mesh` and `traffic` fixtures of conftest.
"""

import contextlib
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from textual.widgets import DataTable, Input, Log, Static

from console.app import ConsoleApp
from console.sources import LocalSockets, Sources, default_sources
from tests.console.pilot import column, table_rows, until
from tests.integration.mesh import Mesh
from tests.integration.processes import start_backend
from vm_mesh import paths


def table(console: ConsoleApp) -> DataTable:
    return console.view.query_one(DataTable)


async def test_views_show_real_traffic_and_a_killed_proxy_is_marked_unreachable(
        mesh: Mesh, traffic: None) -> None:
    console = ConsoleApp(default_sources())
    async with console.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: column(table(console), "STATE") == ["ready"] * 3,
                    "three ready proxies", deadline_s=20)
        await until(pilot, lambda: all(r != "-" for r in column(table(console), "SUCCESS")[:2]),
                    "golden metrics of api and store")

        await pilot.press("3")
        await until(pilot, lambda: {"api", "store", "web"} <= set(column(table(console), "PROXY")),
                    "tap events from every proxy")
        rows = table_rows(table(console))
        assert {r[7] for r in rows} <= {"api", "store"}  # every request went to api or store
        assert {r[8] for r in rows} == {"yes"}  # proxy to proxy is mTLS
        assert "503" in column(table(console), "ST")  # the backends fail 1 in 10

        await pilot.press("4")
        await until(pilot, lambda: [r[:2] for r in table_rows(table(console))] == [
            ["web", "api"], ["web", "store"]], "edges from web")
        assert [r[2:5] for r in table_rows(table(console))] == [
            ["web", "api", "yes"], ["web", "store", "yes"]]

        store = next(p for p in mesh.proxies if p.service == "store")
        store.stop(signal.SIGKILL)
        await pilot.press("1")
        await until(pilot, lambda: column(table(console), "STATE")[1] == "unreachable",
                    "store marked unreachable")
        problems = str(console.view.query_one("#problems", Static).render())
        assert "store: connection to" in problems and "[admin.connect_refused]" in problems
        seen = {n: console.data.statuses[n].last_ok for n in ("api", "web")}
        tapped = console.data.tap.received
        await until(pilot, lambda: all(console.data.statuses[n].last_ok > seen[n]
                                       for n in ("api", "web"))
                    and console.data.tap.received > tapped + 20, "the others to keep updating")
        assert column(table(console), "STATE") == ["ready", "unreachable", "ready"]


async def test_certs_of_real_proxies_share_the_mesh_ca(mesh: Mesh) -> None:
    console = ConsoleApp(default_sources())
    async with console.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: column(table(console), "KIND").count("leaf") == 3,
                    "three leaves")
        rows = table_rows(table(console))
        assert [r[0] for r in rows] == ["anchor", "issuer", "leaf", "leaf", "leaf"]
        assert rows[0][1] == rows[1][1] == "3 prx"
        assert {r[1] for r in rows[2:]} == {"api", "store", "web"}
        assert {r[5] for r in rows} == {"ok"}
        # every leaf names `proxy.<trust domain>`, which Prometheus verifies; the CAs none
        assert column(table(console), "DNS") == ["-", "-", *["proxy.vmesh.local"] * 3]


async def test_expired_leaf_of_a_real_proxy_is_red_on_certs_and_fails_in_checks(
        expired_store: Mesh) -> None:
    console = ConsoleApp(default_sources())
    async with console.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: column(table(console), "KIND").count("leaf") == 2,
                    "the leaves of both proxies")
        rows = table_rows(table(console))
        store = next(i for i, r in enumerate(rows) if r[0] == "leaf" and r[1] == "store")
        state = table(console).get_cell_at((store, 5))
        assert (str(state), "red" in str(state.style)) == ("expired", True)
        assert str(table(console).get_cell_at((store, 4))).startswith("expired ")
        api = next(i for i, r in enumerate(rows) if r[0] == "leaf" and r[1] == "api")
        assert str(table(console).get_cell_at((api, 5))) == "ok"

        await pilot.press("8")
        # the first run may come before the first polls: checks run again every 15 s
        await until(pilot, lambda: table(console).row_count > 0
                    and table_rows(table(console))[0][0] == "fail", "a failed check", 20)
        first = table_rows(table(console))[0]
        assert first[:3] == ["fail", "certs", "leaf of store"]
        assert "certs.leaf_expired" in str(console.view.query_one("#hint", Static).render())


async def test_top_ranks_the_routes_of_real_traffic(mesh: Mesh, traffic: None) -> None:
    console = ConsoleApp(default_sources(), first_view="top")
    async with console.run_test(size=(80, 24)) as pilot:
        def routes() -> set[tuple[str, str, str]]:
            return {(r[0], r[1], r[3]) for r in table_rows(table(console))}

        expected = {("web", dst, f"/items/{n}") for dst in ("api", "store") for n in range(3)}
        await until(pilot, lambda: routes() == expected, "web's six routes", deadline_s=20)
        rates = [float(x) for x in column(table(console), "RPS")]
        assert rates == sorted(rates, reverse=True) and rates[0] > 0
        await pilot.press("s", "s")  # rps -> count -> latency
        await until(pilot, lambda: "sorted by latency" in str(
            console.view.query_one(Static).render()), "the latency ranking")
        worst = [float(x.removesuffix("ms")) for x in column(table(console), "WORST")]
        assert worst == sorted(worst, reverse=True)


def refused_handshake(mesh: Mesh, service: str) -> None:
    """Plain HTTP to a proxy's mTLS port: the proxy refuses it and logs a warning."""
    proxy = next(p for p in mesh.proxies if p.service == service)
    with socket.create_connection(("127.0.0.1", proxy.ports["inbound"]), timeout=5) as plain:
        plain.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        plain.recv(1024)  # the proxy closes the connection


async def test_logs_follow_real_proxies_filtered_by_service_level_and_search(
        mesh: Mesh) -> None:
    console = ConsoleApp(default_sources(), first_view="logs")
    async with console.run_test(size=(80, 24)) as pilot:
        log = console.view.query_one(Log)
        # every proxy logs the console's own tap subscription
        await until(pilot, lambda: {p for p in ("api", "store", "web")
                                    if any(f" {p} " in x and "tap started" in x
                                           for x in log.lines)} == {"api", "store", "web"},
                    "a line of each proxy")
        await pilot.press("slash")
        console.query_one("#prompt", Input).value = "svc=store level=warning refused"
        await pilot.press("enter")
        await pilot.pause()
        assert log.line_count == 0
        refused_handshake(mesh, "api")
        refused_handshake(mesh, "store")  # after the filter: it arrives while following
        await until(pilot, lambda: log.line_count == 1, "store's warning")
        [line] = log.lines
        assert " WARNING store " in line and "connection refused: no valid mesh identity" in line
        assert "reason=tls.handshake_failed" in line


async def test_hosts_shows_the_real_proxy_processes_and_their_instances(
        mesh: Mesh, vmesh_root: Path) -> None:
    # a second instance of api under a root of its own, as each "host" of the demo has
    elsewhere = Mesh(vmesh_root.with_name(vmesh_root.name + "-b"))
    try:
        other_api = elsewhere.start_proxy("api", 1, instance_id="api-elsewhere")
        console = ConsoleApp(default_sources(), first_view="hosts")
        ours = {str(p.proc.pid): (p.service, f"{p.service}-{n}")
                for n, p in enumerate(mesh.proxies, start=1)}
        ours[str(other_api.proc.pid)] = ("api", "api-elsewhere")
        async with console.run_test(size=(80, 24)) as pilot:
            def rows() -> dict[str, list[str]]:
                return {r[0]: r for r in table_rows(table(console)) if r[0] in ours}

            await until(pilot, lambda: len(rows()) == 4, "the four proxy processes")
            for pid, row in rows().items():
                assert (row[1], row[2]) == ours[pid]
                assert float(row[3]) >= 0 and row[4].endswith("MiB") and int(row[5]) >= 1
                assert row[6][-1] in "sm"  # started by this test: seconds or minutes ago
    finally:
        elsewhere.stop()
        shutil.rmtree(elsewhere.root, ignore_errors=True)


@contextlib.contextmanager
def silent_admin_socket(path: Path) -> Iterator[None]:
    """A socket in the admin socket directory that accepts connections and never answers."""
    held: list[socket.socket] = []
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()

        def accept() -> None:
            with contextlib.suppress(OSError):
                while True:
                    held.append(server.accept()[0])

        threading.Thread(target=accept, daemon=True).start()
        try:
            yield
        finally:
            server.shutdown(socket.SHUT_RDWR)
            for conn in held:
                conn.close()
            path.unlink(missing_ok=True)


async def test_a_proxy_that_never_answers_is_marked_and_holds_up_nothing(
        mesh: Mesh, traffic: None) -> None:
    with silent_admin_socket(paths.admin_socket("stuck")):
        console = ConsoleApp(default_sources())
        async with console.run_test(size=(80, 24)) as pilot:
            def states() -> dict[str, str]:
                return dict(zip(column(table(console), "NAME"), column(table(console), "STATE"),
                                strict=True))

            await until(pilot, lambda: states() == {"api": "ready", "store": "ready",
                                                    "stuck": "pending", "web": "ready"},
                        "the three proxies ready while stuck has not answered")
            await pilot.press("3")  # keys work meanwhile; the other tap streams flow
            await until(pilot, lambda: {"api", "store", "web"} <= set(
                column(table(console), "PROXY")), "tap rows of the answering proxies")
            await pilot.press("1")
            await until(pilot, lambda: states()["stuck"] == "unreachable", "stuck marked")
            problems = str(console.view.query_one("#problems", Static).render())
            assert f"stuck: no answer from {paths.admin_socket('stuck')} in time [admin.timeout]" \
                in problems
            seen = {n: console.data.statuses[n].last_ok for n in ("api", "store", "web")}
            await until(pilot, lambda: all(console.data.statuses[n].last_ok > seen[n]
                                           for n in seen), "the others to keep updating")


@contextlib.contextmanager
def second_api_host(mesh: Mesh) -> Iterator[Mesh]:
    """Another host (its own VMESH_ROOT) with a second instance of api, `api-9`, from the
    same CA; web reaches it through the static discovery file of the first host."""
    host = Mesh(Path(f"{mesh.root}b"))
    host.ca = mesh.ca
    backend = start_backend("api", fail_every=10, status=503)
    try:
        api = host.start_proxy("api", backend.port, instance_id="api-9")
        mesh.add_instance("api", api.ports["inbound"], "api-9")
        yield host
    finally:
        host.stop()
        backend.stop()
        subprocess.run(["rm", "-rf", str(host.root)], check=False)


def instance_sockets(where: Path, hosts: dict[str, tuple[Mesh, str]]) -> Path:
    """A directory of admin socket links named by instance (as `vmesh demo` gives its console)."""
    where.mkdir(parents=True)
    for instance, (host, service) in hosts.items():
        (where / f"{instance}.sock").symlink_to(host.root / "run/vmesh" / f"{service}.sock")
    return where


async def test_overview_shows_a_service_over_its_instances_on_two_hosts(
        mesh: Mesh, traffic: None) -> None:
    with second_api_host(mesh) as host_b:
        sockets = instance_sockets(mesh.root / "console", {
            "api-1": (mesh, "api"), "api-9": (host_b, "api"), "store": (mesh, "store"),
            "web": (mesh, "web")})
        console = ConsoleApp(Sources([LocalSockets(sockets)]))
        async with console.run_test(size=(80, 24)) as pilot:
            def rows() -> dict[str, list[str]]:
                return {r[0]: r for r in table_rows(table(console))}

            def serving() -> bool:  # the balancer may prefer one instance: the faster one
                shown = rows()
                return all(shown.get(name, ["", "", "-"])[2] != "-"
                           for name in ("api", "  api-1", "  api-9")) and \
                    float(shown["api"][2]) > 0

            await until(pilot, lambda: list(rows()) == ["api", "  api-1", "  api-9", "store",
                                                        "web"], "api over its two instances")
            await until(pilot, serving, "the rates of api and its instances", 20)
            shown = rows()
            assert shown["api"][1:2] + shown["  api-1"][1:2] == ["2/2 ready", "ready"]
            assert shown["api"][8] == "2 instances"
            # a long socket path shows the end that tells the instances apart
            assert shown["  api-9"][8].startswith("…/") and shown["  api-9"][8].endswith(
                "/api-9.sock"), shown["  api-9"][8]
            total = float(shown["  api-1"][2]) + float(shown["  api-9"][2])
            assert abs(float(shown["api"][2]) - total) <= 0.11  # the service's rate adds up

            next(p for p in host_b.proxies if p.service == "api").stop(signal.SIGKILL)
            await until(pilot, lambda: rows()["  api-9"][1] == "unreachable", "api-9 marked")
            shown = rows()
            assert shown["api"][1] == "1/2 ready" and shown["  api-9"][2:6] == ["-"] * 4
