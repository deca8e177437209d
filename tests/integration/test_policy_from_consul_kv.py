"""Policy from Consul KV: validated like files, reloaded on change, bad keys refused.

No Consul binary is packaged for Debian, so the agent here is a small fake that
keeps the KV contract of /work/shared/reference (blocking `?index`, `X-Consul-Index`,
base64 values, 404 for an empty prefix) on a real loopback socket.
"""

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import consul
import pytest

from tests.unit.policy_helpers import eventually
from vm_mesh.policy.consul_source import ConsulPolicySource, watch
from vm_mesh.policy.store import PolicyStore


class FakeKV:
    def __init__(self) -> None:
        self.values: dict[str, tuple[int, bytes]] = {}
        self.index = 1
        self.changed = threading.Condition()

    def put(self, key: str, value: str) -> None:
        with self.changed:
            self.index += 1
            self.values[key] = (self.index, value.encode())
            self.changed.notify_all()

    def handler(kv) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query, keep_blank_values=True)
                prefix = url.path.removeprefix("/v1/kv/")
                wanted = int(query.get("index", ["0"])[0])
                with kv.changed:
                    kv.changed.wait_for(lambda: kv.index > wanted, timeout=1.0)
                    items = [
                        {"Key": k, "Value": base64.b64encode(v).decode(), "ModifyIndex": i,
                         "CreateIndex": i, "LockIndex": 0, "Flags": 0}
                        for k, (i, v) in sorted(kv.values.items()) if k.startswith(prefix)
                    ]
                    index = kv.index
                body = json.dumps(items).encode()
                self.send_response(200 if items else 404)
                self.send_header("X-Consul-Index", str(index))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) if items else 0))
                self.end_headers()
                if items:
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def kv() -> Iterator[tuple[FakeKV, int]]:
    store = FakeKV()
    server = ThreadingHTTPServer(("127.0.0.1", 0), store.handler())
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield store, server.server_address[1]
    server.shutdown()
    server.server_close()


ROUTE = "kind: HTTPRoute\nname: {name}\nservice: api\nrules: [{{}}]\n"


async def test_consul_keys_join_the_file_policy(kv: tuple[FakeKV, int], tmp_path: Path) -> None:
    fake, port = kv
    (tmp_path / "a.yaml").write_text("kind: ServicePolicy\nservice: api\n")
    store = PolicyStore(tmp_path)
    store.load_initial()
    source = ConsulPolicySource(consul.Consul(host="127.0.0.1", port=port))
    watcher = asyncio.create_task(watch(source, store.set_extra_texts, wait="1s"))
    try:
        fake.put("vmesh/policy/api", ROUTE.format(name="from-kv"))
        await eventually(lambda: len(store.current) == 2)
        sources = [d["source"]["file"] for d in store.describe()["documents"]]
        assert sources == [str(tmp_path / "a.yaml"), "consul:vmesh/policy/api"]
        fake.put("vmesh/policy/api", ROUTE.format(name="from-kv") + "  bad: 1\n")
        await eventually(lambda: store.errors)
        assert store.errors[0].file == "consul:vmesh/policy/api"
        assert store.current.routes_for("api")[0].doc.name == "from-kv"
        fake.put("vmesh/policy/api", ROUTE.format(name="fixed"))
        await eventually(lambda: store.current.routes_for("api")[0].doc.name == "fixed")
    finally:
        watcher.cancel()
