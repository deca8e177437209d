"""A request that carries a sampled W3C trace gets a span at each proxy it crosses, exported
over OTLP/HTTP (to tests/otlp_receiver.py, which keeps the collector's contract): the
caller's proxy a CLIENT span, the callee's a SERVER span under it, and the app is handed a
`traceparent` whose parent is the callee proxy's span, and the `tracestate` that came
(less what its grammar refuses)."""

import json
import signal
import subprocess
from pathlib import Path

from tests.integration.mesh import Mesh, wait_until
from tests.integration.processes import start_backend
from tests.otlp_receiver import OtlpReceiver
from tests.support import free_port, require_tool

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UNSAMPLED = "0af7651916cd43dd8448eb211c80319c"
PARENT = "00f067aa0ba902b7"  # the app's span that made the request


def _get(curl: str, url: str, traceparent: str, *headers: str) -> dict:
    extra = [arg for header in headers for arg in ("-H", header)]
    result = subprocess.run([curl, "-sS", "-H", "Host: web", "-H", f"traceparent: {traceparent}",
                             *extra, url], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(result.stdout)


def exporting_mesh(tmp_path: Path, endpoint: str) -> Mesh:
    """A mesh whose proxies export their spans to the collector at `endpoint`."""
    mesh = Mesh(tmp_path)
    mesh_toml = tmp_path / "etc/vmesh/mesh.toml"
    mesh_toml.write_text(mesh_toml.read_text() + f'[tracing]\notlp_endpoint = "{endpoint}"\n')
    return mesh


def test_each_proxy_adds_its_span_and_hands_it_on_as_the_parent(tmp_path: Path) -> None:
    curl = require_tool("curl")
    receiver = OtlpReceiver().start()
    mesh = exporting_mesh(tmp_path, receiver.endpoint)
    backend = start_backend("web")
    try:
        mesh.start_proxy("web", backend.port)
        front = mesh.start_proxy("front", 1)
        url = f"http://{front.outbound}/items/7"
        unsampled = _get(curl, url, f"00-{UNSAMPLED}-{PARENT}-00")
        assert unsampled["traceparent"] == f"00-{UNSAMPLED}-{PARENT}-00"  # forwarded untouched
        # a member of bad grammar is dropped alone; the rest goes on, and is each span's
        answer = _get(curl, url, f"00-{TRACE}-{PARENT}-01",
                      "tracestate: congo=t61rcWkgMzE,Bad Key=1, rojo=00f067aa0ba902b7")
        state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        assert answer["tracestate"] == state

        wait_until(lambda: len(receiver.of_trace(TRACE)) == 2, within=20,
                   what="a span from each proxy")
        spans = {s["resource"]["service.name"]: s for s in receiver.of_trace(TRACE)}
        client, server = spans["front"], spans["web"]
        assert (client["kind"], client["parentSpanId"]) == (3, PARENT)
        assert (server["kind"], server["parentSpanId"]) == (2, client["spanId"])
        assert answer["traceparent"] == f"00-{TRACE}-{server['spanId']}-01"
        for span in (client, server):
            attributes = {a["key"]: a["value"] for a in span["attributes"]}
            assert attributes["http.response.status_code"] == {"intValue": "200"}
            assert attributes["url.path"] == {"stringValue": "/items/7"}
            assert attributes["vmesh.dst_service"] == {"stringValue": "web"}
            assert span["traceState"] == state
            assert int(span["startTimeUnixNano"]) < int(span["endTimeUnixNano"])
        # the client span starts before it sends, the server span after it receives; a span
        # ends when its proxy records it, after its response left, and a process descheduled
        # right after that write may record its end after the other proxy has relayed the
        # response and recorded its own: so the ends are not ordered, only the server's start
        assert (int(client["startTimeUnixNano"]) <= int(server["startTimeUnixNano"])
                < int(client["endTimeUnixNano"]))
        assert client["resource"]["service.instance.id"] == "front-2"
        # the unsampled request went first through the same exporters: it made no span
        assert receiver.of_trace(UNSAMPLED) == []
    finally:
        mesh.stop()
        backend.stop()
        receiver.stop()


def test_a_collector_that_is_down_costs_spans_not_requests(tmp_path: Path) -> None:
    curl = require_tool("curl")
    nobody = f"http://127.0.0.1:{free_port()}/v1/traces"  # nothing listens there
    mesh = exporting_mesh(tmp_path, nobody)
    backend = start_backend("web")
    try:
        mesh.start_proxy("web", backend.port)
        front = mesh.start_proxy("front", 1)
        url = f"http://{front.outbound}/items/7"
        for _ in range(3):
            assert _get(curl, url, f"00-{TRACE}-{PARENT}-01")["name"] == "web"
        failed = front.wait_for_log(lambda r: r.get("event") == "tracing_export_failed")
        assert failed["endpoint"] == nobody
        assert _get(curl, url, f"00-{TRACE}-{PARENT}-01")["name"] == "web"
    finally:
        mesh.stop()
        backend.stop()


def test_sighup_starts_moves_and_stops_the_export_and_a_bad_file_changes_nothing(
        tmp_path: Path) -> None:
    curl = require_tool("curl")
    first, second = OtlpReceiver().start(), OtlpReceiver().start()
    mesh = Mesh(tmp_path)
    mesh_toml = tmp_path / "etc/vmesh/mesh.toml"
    untraced = mesh_toml.read_text()
    backend = start_backend("web")

    def reload(text: str, event: str) -> dict:
        """Write mesh.toml, SIGHUP the front proxy, and return its log line of `event`."""
        mesh_toml.write_text(text)
        seen = len(front.logs)
        front.proc.send_signal(signal.SIGHUP)
        return front.wait_for_log(lambda r: r in front.logs[seen:] and r.get("event") == event)

    def traced(trace_id: str) -> None:
        assert _get(curl, url, f"00-{trace_id}-{PARENT}-01")["name"] == "web"

    try:
        mesh.start_proxy("web", backend.port)
        front = mesh.start_proxy("front", 1)
        url = f"http://{front.outbound}/items/7"
        traced("1" * 32)  # no [tracing] yet: no span anywhere

        enabled = reload(untraced + f'[tracing]\notlp_endpoint = "{first.endpoint}"\n',
                         "tracing_enabled")
        assert enabled["endpoint"] == first.endpoint
        traced("2" * 32)
        wait_until(lambda: len(first.of_trace("2" * 32)) == 1, within=20, what="a span")

        failed = reload(untraced + "[tracing]\notlp_endpoint = 4318\n", "config_reload_failed")
        assert "mesh.toml:" in failed["detail"] and "otlp_endpoint" in failed["detail"]
        traced("3" * 32)  # the collector in force still gets the spans
        wait_until(lambda: len(first.of_trace("3" * 32)) == 1, within=20, what="a span")

        moved = reload(untraced + f'[tracing]\notlp_endpoint = "{second.endpoint}"\n',
                       "tracing_enabled")
        assert moved["endpoint"] == second.endpoint
        traced("4" * 32)
        wait_until(lambda: len(second.of_trace("4" * 32)) == 1, within=20, what="a span")

        reload(untraced, "tracing_disabled")
        traced("5" * 32)
        traced("6" * 32)
        # the proxy stops, sending every span it still holds: none of the last two
        mesh.stop()
        assert first.of_trace("1" * 32) == second.of_trace("1" * 32) == []
        assert first.of_trace("4" * 32) == second.of_trace("2" * 32) == []
        assert [r.of_trace(t * 32) for r in (first, second) for t in "56"] == [[]] * 4
    finally:
        mesh.stop()
        backend.stop()
        first.stop()
        second.stop()
