"""What a client chooses, a Host header of up to 32 kB or a path of up to 8 kB, reaches the
access log (stdout, the journal, the `/v1/logs` ring) and exported spans cut to its first
`MAX_CLIENT_TEXT` characters and a visible mark, so that a client cannot fill the log ring
or the span queue with its own text. The request itself is served, or refused, as before."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from proxy.events import MAX_CLIENT_TEXT, TRUNCATED
from tests.integration.mesh import Mesh, ProxyProcess, wait_until
from tests.integration.processes import start_backend
from tests.otlp_receiver import OtlpReceiver
from vm_mesh.defaults import ERROR_HEADER
from vm_mesh.logs import MAX_FIELD_CHARS

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
LONG_PATH = "/" + "p" * 7000  # the request line may be 8 kB
LONG_HOST = "h" * 20_000  # a header may be 32 kB


def cut(text: str) -> str:
    return text[:MAX_CLIENT_TEXT] + TRUNCATED


@dataclass
class TracedMesh:
    front: ProxyProcess
    web: ProxyProcess
    receiver: OtlpReceiver


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[TracedMesh]:
    receiver = OtlpReceiver().start()
    mesh = Mesh(tmp_path)
    mesh_toml = tmp_path / "etc/vmesh/mesh.toml"
    mesh_toml.write_text(
        mesh_toml.read_text() + f'[tracing]\notlp_endpoint = "{receiver.endpoint}"\n')
    backend = start_backend("web")
    try:
        web = mesh.start_proxy("web", backend.port, extra="access_log = true")
        front = mesh.start_proxy("front", 1, extra="access_log = true")
        yield TracedMesh(front, web, receiver)
    finally:
        mesh.stop()
        backend.stop()
        receiver.stop()


def access_line(proxy: ProxyProcess) -> dict:
    """The request of the proxy's one access-log line on stdout, which its ring keeps too."""
    line = proxy.wait_for_log(lambda record: record.get("logger") == "vmesh.access")
    with proxy.admin() as admin:
        ring = [record for record in map(json.loads, admin.get("/v1/logs").text.splitlines())
                if record.get("logger") == "vmesh.access"]
    assert ring == [line]
    return line["request"]


def test_a_long_path_is_served_and_logged_and_exported_cut(traced: TracedMesh) -> None:
    answer = httpx.get(f"http://{traced.front.outbound}{LONG_PATH}", timeout=10, headers={
        "Host": "web", "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})
    assert answer.status_code == 200
    assert answer.json()["path"] == LONG_PATH  # the app got it whole
    for proxy in (traced.front, traced.web):
        assert access_line(proxy)["path"] == cut(LONG_PATH)
    wait_until(lambda: len(traced.receiver.of_trace(TRACE)) == 2, within=20,
               what="a span from each proxy")
    for span in traced.receiver.of_trace(TRACE):
        attributes = {a["key"]: a["value"] for a in span["attributes"]}
        assert attributes["url.path"] == {"stringValue": cut(LONG_PATH)}


def test_a_long_host_is_refused_as_before_and_logged_cut(traced: TracedMesh) -> None:
    answer = httpx.get(f"http://{traced.front.outbound}/", headers={"Host": LONG_HOST},
                       timeout=10)
    assert answer.status_code == 503
    assert answer.headers[ERROR_HEADER] == "no_endpoints"
    request = access_line(traced.front)
    assert request["authority"] == cut(LONG_HOST)
    assert request["dst"]["service"] == cut(LONG_HOST)


def test_every_log_line_of_a_long_host_carries_it_cut(traced: TracedMesh) -> None:
    httpx.get(f"http://{traced.front.outbound}/", headers={"Host": LONG_HOST}, timeout=10)
    access_line(traced.front)  # the request's last line
    failed = traced.front.wait_for_log(lambda record: record.get("msg") == "request failed")
    assert failed["dst_service"] == cut(LONG_HOST)
    assert failed["detail"].endswith(TRUNCATED)
    with traced.front.admin() as admin:
        ring = [json.loads(line) for line in admin.get("/v1/logs").text.splitlines()]
    for line in [*traced.front.logs, *ring]:
        longest = max(len(value) for value in line.values() if isinstance(value, str))
        assert longest <= MAX_FIELD_CHARS + len(TRUNCATED), line["msg"]
