"""One request through the mesh produces, at each proxy, one tap event with every field known."""

import json
import threading
import time
from pathlib import Path

import httpx

from tests.integration.mesh import Mesh
from tests.integration.processes import start_backend

TD = "vmesh.local"
IDLE_S = 1.0


def _first_event(proxy, found: list[dict], ready: threading.Event) -> None:
    with proxy.admin() as client, client.stream("GET", "/v1/tap") as response:
        ready.set()
        for line in response.iter_lines():
            found.append(json.loads(line))
            return


def _tap(proxy) -> tuple[threading.Thread, list[dict]]:
    found: list[dict] = []
    ready = threading.Event()
    thread = threading.Thread(target=_first_event, args=(proxy, found, ready), daemon=True)
    thread.start()
    assert ready.wait(10)
    return thread, found


def test_outbound_and_inbound_events_name_both_identities_and_the_outcome(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    backend = start_backend("web")
    try:
        web = mesh.start_proxy("web", backend.port)
        front = mesh.start_proxy("front", 1)
        out_thread, outbound = _tap(front)
        in_thread, inbound = _tap(web)
        response = httpx.post(f"http://{front.outbound}/orders?x=1", headers={"host": "web"},
                              content=b"y" * 1000, timeout=10)
        assert response.status_code == 200
        out_thread.join(10)
        in_thread.join(10)
    finally:
        mesh.stop()
        backend.stop()
    (out,), (into,) = outbound, inbound
    assert out["direction"] == "outbound" and into["direction"] == "inbound"
    for event in (out, into):
        assert event["src"]["id"] == f"spiffe://{TD}/svc/front"
        assert event["dst"]["service"] == "web"
        assert event["tls"] is True
        assert (event["method"], event["status"], event["error"]) == ("POST", 200, None)
        assert event["path"].startswith("/orders")
        assert event["bytes_in"] == 1000
        assert event["bytes_out"] == len(response.content)
        assert event["latency_ms"] > 0
    assert out["dst"]["id"] == f"spiffe://{TD}/svc/web"
    assert out["dst"]["instance"] and out["dst"]["addr"].startswith("127.0.0.1:")
    assert out["authority"] == "web"
    assert into["policy"]["decision"] == "allow"


def test_inbound_latency_leaves_out_the_time_a_kept_alive_connection_sat_idle(
    tmp_path: Path,
) -> None:
    mesh = Mesh(tmp_path)
    backend = start_backend("web")
    try:
        web = mesh.start_proxy("web", backend.port)
        front = mesh.start_proxy("front", 1)
        with httpx.Client(base_url=f"http://{front.outbound}", headers={"host": "web"}) as app:
            assert app.get("/first").status_code == 200
            # the mTLS connection between the proxies is pooled: it now idles for a second
            time.sleep(IDLE_S)
            in_thread, inbound = _tap(web)
            out_thread, outbound = _tap(front)
            assert app.get("/second").status_code == 200
            in_thread.join(10)
            out_thread.join(10)
        assert front.metric("connection_open_total", direction="outbound") == 1  # reused
    finally:
        mesh.stop()
        backend.stop()
    (into,), (out,) = inbound, outbound
    assert into["path"] == "/second"
    # idle time excluded on both hops (not compared with each other: each proxy reads its
    # clock after its own write, and a busy machine may hold the inbound one back there
    # longer than the outbound one takes to relay the answer)
    assert 0 < into["latency_ms"] < IDLE_S * 1000
    assert 0 < out["latency_ms"] < IDLE_S * 1000
