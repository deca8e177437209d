"""A query often carries a secret (`?access_token=...`). The app gets the request whole, but
what the proxies show of it, each side's tap stream and access-log line, keeps the query's
keys and replaces every value with `REDACTED`, as their spans do."""

import json
from collections.abc import Iterator
from contextlib import ExitStack

import httpx

from tests.integration.mesh import Mesh, ProxyProcess
from tests.integration.processes import start_backend

TARGET = "/items?access_token=s3cr3t&page=2&flag"
SHOWN = "/items?access_token=REDACTED&page=REDACTED&flag"


def tap_events(stack: ExitStack, proxy: ProxyProcess) -> Iterator[dict]:
    """The proxy's tap, subscribed once this returns (the stream's head has come)."""
    client = stack.enter_context(proxy.admin())
    stream = stack.enter_context(client.stream("GET", "/v1/tap"))
    assert stream.status_code == 200
    return (json.loads(line) for line in stream.iter_lines() if line.strip())


def test_the_query_values_stay_out_of_tap_and_access_log(tmp_path) -> None:
    mesh = Mesh(tmp_path)
    backend = start_backend("web")
    try:
        web = mesh.start_proxy("web", backend.port, extra="access_log = true")
        front = mesh.start_proxy("front", 1, extra="access_log = true")
        with ExitStack() as stack:
            taps = {proxy.service: tap_events(stack, proxy) for proxy in (front, web)}
            answer = httpx.get(f"http://{front.outbound}{TARGET}", headers={"Host": "web"},
                               timeout=10)
            tapped = {service: next(events) for service, events in taps.items()}
        logged = {proxy.service: proxy.wait_for_log(
            lambda record: record.get("logger") == "vmesh.access")["request"]
            for proxy in (front, web)}
    finally:
        mesh.stop()
        backend.stop()

    assert answer.status_code == 200
    assert answer.json()["path"] == TARGET  # the app got the request whole
    assert {s: (e["direction"], e["path"]) for s, e in tapped.items()} == {
        "front": ("outbound", SHOWN), "web": ("inbound", SHOWN)}
    assert {s: line["path"] for s, line in logged.items()} == {"front": SHOWN, "web": SHOWN}
    assert "s3cr3t" not in json.dumps([tapped, logged])
