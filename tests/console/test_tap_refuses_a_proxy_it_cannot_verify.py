"""`vmesh tap` against a proxy whose certificate the operator's trust bundle does not verify:
before its stream was ever open that is a configuration error, named in one line (exit 1);
after, a rotation may be under way, and the stream is opened again once it verifies."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

from identity import pki
from tests.console.conftest import REPO, wait_for
from tests.console.relay import Relay
from tests.console.test_cli_twins_print_columns_and_json import vmesh
from tests.console.test_streams_and_polls_come_back_after_failures import operator_with_proxy
from tests.integration.mesh import Mesh
from vm_mesh import paths

UNTRUSTED = "unable to get local issuer certificate"


def foreign_bundle(bundle: Path) -> None:
    """Make `bundle` the trust bundle of another mesh."""
    pki.write_file(bundle, pki.cert_pem(pki.create_anchor("vmesh.local").cert))


def test_tap_of_a_proxy_the_bundle_does_not_verify_says_so_and_fails(vmesh_root: Path) -> None:
    mesh = Mesh(vmesh_root)
    try:
        api = mesh.start_proxy("api", 1)
        assert vmesh("identity", "operator", "ann").returncode == 0
        bundle = paths.state_dir("operator") / "bundle.pem"
        foreign_bundle(bundle)
        address = f"127.0.0.1:{api.ports['admin']}"
        tap = vmesh("tap", "--no-local", "--no-host-discovery", "--admin", address,
                    timeout=15)  # it retried for ever
    finally:
        mesh.stop()
    assert tap.returncode == 1
    assert tap.stderr == (f"vmesh: {address}: the certificate of {address} does not verify "
                          f"against {bundle}: {UNTRUSTED} (is it this mesh's trust bundle? "
                          "pass another with --ca) [admin.tls_untrusted]\n")
    assert tap.stdout == ""


def test_tap_opened_once_waits_for_a_proxy_it_cannot_verify_any_more(start_admin) -> None:
    credentials, address = operator_with_proxy(start_admin)
    host, port = address.rsplit(":", 1)
    relay = Relay((host, int(port)))
    tap = subprocess.Popen(
        [sys.executable, "-m", "vm_mesh", "tap", "--json", "--no-local", "--no-host-discovery",
         "--admin", f"127.0.0.1:{relay.port}"],
        cwd=REPO, env=os.environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events: queue.Queue[str] = queue.Queue()
    errors: queue.Queue[str] = queue.Queue()
    for stream, lines in ((tap.stdout, events), (tap.stderr, errors)):
        threading.Thread(target=lambda s=stream, q=lines: [q.put(x) for x in s],
                         daemon=True).start()
    try:
        json.loads(events.get(timeout=20))  # the stream is open
        bundle = credentials.ca.read_bytes()
        foreign_bundle(credentials.ca)  # as if the proxy's leaf came from a new anchor
        relay.cut()
        tried = relay.accepted
        # the second attempt after the cut comes only if the first, refused, was retried
        wait_for(lambda: relay.accepted >= tried + 2, 20, "two attempts after the cut")
        assert "[admin.connection_lost]" in errors.get(timeout=1)  # the outage, once
        pki.write_file(credentials.ca, bundle)
        while not events.empty():  # what came before the cut
            events.get()
        json.loads(events.get(timeout=30))  # the stream is open again
        assert tap.poll() is None
    finally:
        tap.kill()
        tap.wait(timeout=10)
        relay.close()
