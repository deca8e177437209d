"""A fake Consul agent on a real loopback socket, for the parts of the HTTP API vmesh uses.

No Consul binary is packaged for Debian, so tests run against this instead. It
keeps the documented contract (/work/shared/reference, section 3):

- `PUT /v1/agent/service/register`: keys matched case-insensitively (py-consul
  sends lower-case), `Check`/`check`/`Checks`/`checks` accepted; an HTTP check
  is really run against its URL every `Interval` (2xx passing, 429 warning,
  anything else critical; an https URL's certificate is verified against the
  system's CAs unless `TLSSkipVerify`), a TCP check really connects to its `host:port`
  (connected passing, else critical); new checks start critical unless
  `Status` says otherwise; `DeregisterCriticalServiceAfter` is honoured. `TaggedAddresses`
  (py-consul sends `tagged_addresses`, which Consul takes too) of
  `{"lan"|"wan": {"address", "port"}}`, kept as registered.
- `PUT /v1/agent/service/deregister/:id`: 200; 404 `Unknown service ID "x". Ensure that
  the service ID is passed, not the service name.` for an id the agent does not have, as
  current agents answer (the wording of hashicorp/consul#10894).
- `GET /v1/agent/services`: `{id: {ID, Service, Tags, Meta, Port, Address, Weights, ...}}`
  of the services registered with this agent (not blocking, no `X-Consul-Index`).
- `GET /v1/catalog/services`: `{name: [tags]}` of every registered service, with
  `X-Consul-Index` (not blocking: vmesh lists it, it does not watch it).
- `GET /v1/health/service/:name`: Node/Service/Checks entries including the
  node's `serfHealth`; `?passing` (bare or a Go bool, else 400 `Invalid value
  for ?passing`); `?index=N&wait=D` blocks until the index passes N or the wait
  ends (Go durations, default 5m, max 10m, bad -> 400 `Invalid wait time`,
  bad index -> 400 `Invalid index`); `X-Consul-Index` (never 0),
  `X-Consul-KnownLeader`, `X-Consul-LastContact` on every answer. `Service.TaggedAddresses`
  holds the registered ones in the documented form `{"wan": {"address": ..., "port": ...}}`.
- `?dc=` on these GETs, as over WAN federation (`federate(other)` joins two
  agents' datacenters): the agent's own datacenter or none is its own state;
  another datacenter of the federation is answered from that agent's state
  (blocking on its index); one whose agent is down is a 500 `Remote DC has no
  server currently reachable`, and an unknown one a 500 `No path to
  datacenter` (Consul's words, no `X-Consul-Index`). Entries carry the
  datacenter in `Node.Datacenter`.
- `GET /v1/catalog/datacenters`: `["dc1", "east"]`, the agent's own first (the
  nearest), then the federation's; not blocking, no `X-Consul-Index`.
- `GET /v1/kv/:key[?recurse]`: a list of `{Key, Value (base64, null when empty),
  Flags, CreateIndex, ModifyIndex, LockIndex}`, 404 when nothing matches, both
  with `X-Consul-Index` (the highest ModifyIndex or deletion tombstone under the
  prefix, else the raft index); blocking on
  `?index=N&wait=D` as for health. `PUT /v1/kv/:key` (body = value) answers
  `true`; `DELETE /v1/kv/:key[?recurse]` answers `true`.

- ACL tokens, as `X-Consul-Token` (or `Authorization: Bearer`, or `?token=`): each request's
  is recorded in `tokens` (None for none). With `acl_token` set the agent enforces ACLs with
  `default_policy = "deny"` and that one token allowed everything: any other token is a 403
  `ACL not found` on every endpoint; no token (the anonymous token) is a 403 `Permission
  denied` on writes and KV reads, and the lists of services and health entries come back
  empty with `X-Consul-Results-Filtered-By-ACLs: true` (Consul filters what the token may
  not read); `/v1/catalog/datacenters` needs no permission.

Test hooks: `restore_snapshot(index)` makes the index go backwards, as a
restored cluster does; `stop()`/`start()` take the agent down and back on the
same port. `python -m tests.fake_consul --listen ADDRESS` runs one in the
foreground (the e2e hosts start it inside a network namespace); `--datacenter DC`
names its datacenter and `--federate DC@ADDRESS` adds an agent of another one,
federated with it in the same process.
"""

import base64
import contextlib
import json
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

NODE = "fake-node"
NODE_ADDRESS = "127.0.0.1"
MAX_WAIT_S = 600.0
DEFAULT_WAIT_S = 300.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def go_duration(text: str) -> float:
    """Seconds of a Go duration string (`10s`, `1m30s`, `250ms`); ValueError otherwise."""
    if text == "0":
        return 0.0
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(text)
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _lower_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k.lower(): v for k, v in value.items()}
    return value


@dataclass
class Check:
    check_id: str
    name: str
    status: str
    http: str | None
    tcp: str | None
    tls_skip_verify: bool
    interval_s: float
    timeout_s: float
    deregister_after_s: float | None
    critical_since: float | None = None
    output: str = ""


@dataclass
class Service:
    service_id: str
    name: str
    address: str
    port: int
    tags: list[str]
    meta: dict[str, str]
    weights: dict[str, int]
    tagged_addresses: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    modify_index: int = 0
    definition: dict[str, Any] = field(default_factory=dict)  # the registration body as sent


@dataclass
class KvEntry:
    value: bytes
    create_index: int
    modify_index: int
    flags: int = 0


class FakeConsul:
    """The agent's state, its HTTP server and its check runner."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, datacenter: str = "dc1", node: str = NODE,
        acl_token: str | None = None,
    ) -> None:
        """An agent of `datacenter` to serve on `host:port` once started (port 0: one the OS
        picks); with `acl_token`, ACLs are enforced and that is the token allowed (module
        docstring)."""
        self.host = host
        self.acl_token = acl_token
        self.tokens: list[str | None] = []  # the ACL token of every request, None for none
        self.datacenter = datacenter
        self.node = node
        self.federation: list[FakeConsul] = []  # the other datacenters' agents, over the WAN
        self.services: dict[str, Service] = {}
        self.kv: dict[str, KvEntry] = {}
        self.kv_tombstones: dict[str, int] = {}  # deleted key -> index of its deletion
        self.index = 1
        self.changed = threading.Condition()
        self.requests: list[str] = []  # path?query of every request, for assertions
        self._server: ThreadingHTTPServer | None = None
        self._port = port
        self._stopping = threading.Event()
        self._checker: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    def discovery_table(self) -> str:
        """The body of mesh.toml's [discovery] table for proxies using this agent (short waits
        and check intervals, for tests)."""
        return (
            'backend = "consul"\n'
            f'consul_url = "http://{self.host}:{self.port}"\n'
            'consul_wait = "1s"\nconsul_check_interval = "100ms"\n'
        )

    def start(self) -> None:
        """Serve (on the port given, else one chosen by the OS the first time; the same one
        after)."""
        self._server = ThreadingHTTPServer((self.host, self._port), self._handler())
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self._stopping.clear()
        self._checker = threading.Thread(target=self._run_checks, daemon=True)
        self._checker.start()

    def stop(self) -> None:
        """Take the agent down: the port refuses connections until `start()`."""
        self._stopping.set()
        with self.changed:
            self.changed.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for connection in list(self._connections):  # kept-alive clients see the agent go too
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._connections.clear()
        if self._checker is not None:
            self._checker.join(timeout=5)

    def federate(self, other: "FakeConsul") -> None:
        """Join `other`'s datacenter over the WAN: each agent answers `?dc=` for the other."""
        self.federation.append(other)
        other.federation.append(self)

    @property
    def running(self) -> bool:
        return self._server is not None

    # ---- state changes ---------------------------------------------------------------------
    def _bump(self, service: Service | None = None) -> None:
        self.index += 1
        if service is not None:
            service.modify_index = self.index
        self.changed.notify_all()

    def restore_snapshot(self, index: int) -> None:
        """Make the raft index go backwards (a restored snapshot), keeping the services."""
        with self.changed:
            self.index = index
            for service in self.services.values():
                service.modify_index = min(service.modify_index, index)
            for entry in self.kv.values():
                entry.modify_index = min(entry.modify_index, index)
                entry.create_index = min(entry.create_index, index)
            self.kv_tombstones = {k: min(i, index) for k, i in self.kv_tombstones.items()}
            self.changed.notify_all()

    def register(self, body: dict[str, Any]) -> None:
        data = _lower_keys(body)
        name = data.get("name")
        if not name:
            raise ValueError("Missing service name")
        weights = _lower_keys(data.get("weights") or {})
        tagged = data.get("taggedaddresses") or data.get("tagged_addresses") or {}
        if not isinstance(tagged, dict):
            raise ValueError("TaggedAddresses is not an object")
        tagged_addresses = {}
        for tag, address in tagged.items():
            fields = _lower_keys(address)
            if not isinstance(fields, dict) or not isinstance(fields.get("port", 0), int):
                raise ValueError(f"TaggedAddresses.{tag} is not {{address, port}}")
            tagged_addresses[tag] = {"address": str(fields.get("address") or ""),
                                     "port": int(fields.get("port") or 0)}
        service = Service(
            service_id=data.get("id") or name,
            name=name,
            address=data.get("address") or "",
            port=int(data.get("port") or 0),
            tags=list(data.get("tags") or []),
            meta=dict(data.get("meta") or {}),
            weights={"Passing": int(weights.get("passing", 1)),
                     "Warning": int(weights.get("warning", 1))},
            definition=body,
            tagged_addresses=tagged_addresses,
        )
        definitions = []
        for key in ("check", "checks"):
            value = data.get(key)
            if isinstance(value, dict):
                definitions.append(value)
            elif isinstance(value, list):
                definitions.extend(v for v in value if isinstance(v, dict))
        for number, raw in enumerate(definitions, start=1):
            check = _lower_keys(raw)
            suffix = "" if len(definitions) == 1 else f":{number}"
            deregister = check.get("deregistercriticalserviceafter")
            service.checks.append(
                Check(
                    check_id=check.get("id") or check.get("checkid")
                    or f"service:{service.service_id}{suffix}",
                    name=check.get("name") or f"Service '{name}' check",
                    status=check.get("status") or "critical",
                    http=check.get("http"),
                    tcp=check.get("tcp"),
                    tls_skip_verify=bool(check.get("tlsskipverify")),
                    interval_s=go_duration(check.get("interval") or "10s"),
                    timeout_s=go_duration(check.get("timeout") or "10s"),
                    deregister_after_s=go_duration(deregister) if deregister else None,
                    critical_since=time.monotonic(),
                )
            )
        with self.changed:
            self.services[service.service_id] = service
            self._bump(service)

    def deregister(self, service_id: str) -> bool:
        """Remove `service_id` and its checks; False when the agent has no such service."""
        with self.changed:
            if self.services.pop(service_id, None) is None:
                return False
            self._bump()
            return True

    def set_status(self, check: Check, status: str, output: str = "") -> None:
        with self.changed:
            if check.status == status:
                return
            check.status = status
            check.output = output
            check.critical_since = time.monotonic() if status == "critical" else None
            for service in self.services.values():
                if check in service.checks:
                    self._bump(service)

    def _run_checks(self) -> None:
        due: dict[int, float] = {}
        while not self._stopping.is_set():
            now = time.monotonic()
            with self.changed:
                services = list(self.services.values())
            for service in services:
                for check in service.checks:
                    if (check.http or check.tcp) and due.get(id(check), 0.0) <= now:
                        due[id(check)] = now + check.interval_s
                        self.set_status(check, *self._probe(check))
                    if (check.deregister_after_s is not None and check.critical_since is not None
                            and now - check.critical_since > check.deregister_after_s):
                        self.deregister(service.service_id)
            self._stopping.wait(0.02)

    @staticmethod
    def _probe(check: Check) -> tuple[str, str]:
        if check.tcp is not None:
            host, _, port = check.tcp.rpartition(":")
            try:
                with socket.create_connection((host.strip("[]"), int(port)), check.timeout_s):
                    return "passing", f"TCP connect {check.tcp}: Success"
            except OSError as exc:
                return "critical", f"dial tcp {check.tcp}: {exc}"
        assert check.http is not None
        context = ssl.create_default_context()
        if check.tls_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(check.http, timeout=check.timeout_s,
                                        context=context) as answer:
                code = answer.status
        except urllib.error.HTTPError as exc:
            code = exc.code
        except Exception as exc:  # whatever goes wrong, the check is critical, as in Consul
            return "critical", f"Get {check.http}: {exc}"
        status = "passing" if 200 <= code < 300 else "warning" if code == 429 else "critical"
        return status, f"HTTP GET {check.http}: {code}"

    def kv_put(self, key: str, value: bytes | str, flags: int = 0) -> None:
        data = value.encode() if isinstance(value, str) else value
        with self.changed:
            self.index += 1
            old = self.kv.get(key)
            created = old.create_index if old else self.index
            self.kv[key] = KvEntry(data, created, self.index, flags)
            self.changed.notify_all()

    def kv_delete(self, key: str, recurse: bool = False) -> None:
        with self.changed:
            doomed = [k for k in self.kv if (k.startswith(key) if recurse else k == key)]
            self._bump()
            for name in doomed:
                del self.kv[name]
                self.kv_tombstones[name] = self.index

    def kv_entries(self, key: str, recurse: bool) -> tuple[list[dict[str, Any]], int]:
        """The entries a GET returns and its X-Consul-Index (call with `changed` held)."""
        names = sorted(k for k in self.kv if (k.startswith(key) if recurse else k == key))
        entries = [
            {"LockIndex": 0, "Key": name, "Flags": self.kv[name].flags,
             "Value": base64.b64encode(self.kv[name].value).decode() if self.kv[name].value
             else None,
             "CreateIndex": self.kv[name].create_index,
             "ModifyIndex": self.kv[name].modify_index}
            for name in names
        ]
        # tombstones keep the index of a prefix from going backwards when a key goes, as in Consul
        indexes = [e["ModifyIndex"] for e in entries] + [
            i for k, i in self.kv_tombstones.items() if (k.startswith(key) if recurse else k == key)
        ]
        return entries, max(indexes, default=self.index)

    # ---- reads -----------------------------------------------------------------------------
    def catalog(self) -> dict[str, list[str]]:
        """`/v1/catalog/services`: each service name with the union of its instances' tags."""
        tags: dict[str, set[str]] = {}
        for service in self.services.values():
            tags.setdefault(service.name, set()).update(service.tags)
        return {name: sorted(found) for name, found in sorted(tags.items())}

    def agent_services(self) -> dict[str, dict[str, Any]]:
        """`/v1/agent/services`: the services registered with this agent, by id."""
        return {
            service.service_id: {
                "ID": service.service_id, "Service": service.name, "Tags": service.tags,
                "Meta": service.meta, "Port": service.port, "Address": service.address,
                "TaggedAddresses": service.tagged_addresses,
                "Weights": service.weights, "EnableTagOverride": False,
                "Datacenter": self.datacenter, "Namespace": "default",
            }
            for service in sorted(self.services.values(), key=lambda s: s.service_id)
        }

    def datacenters(self) -> list[str]:
        """`/v1/catalog/datacenters`: this agent's datacenter, then the federation's."""
        return [self.datacenter, *(other.datacenter for other in self.federation)]

    def health_entries(self, name: str, passing: bool) -> list[dict[str, Any]]:
        serf = {"Node": self.node, "CheckID": "serfHealth", "Name": "Serf Health Status",
                "Status": "passing", "Notes": "", "Output": "Agent alive and reachable",
                "ServiceID": "", "ServiceName": "", "ServiceTags": [], "Type": "",
                "Namespace": "default", "CreateIndex": 1, "ModifyIndex": 1}
        entries = []
        for service in sorted(self.services.values(), key=lambda s: s.service_id):
            if service.name != name:
                continue
            checks = [serf] + [
                {"Node": self.node, "CheckID": c.check_id, "Name": c.name, "Status": c.status,
                 "Notes": "", "Output": c.output, "ServiceID": service.service_id,
                 "ServiceName": service.name, "ServiceTags": service.tags,
                 "Type": "http" if c.http else "", "Namespace": "default",
                 "CreateIndex": service.modify_index, "ModifyIndex": service.modify_index}
                for c in service.checks
            ]
            if passing and any(c["Status"] != "passing" for c in checks):
                continue
            entries.append({
                "Node": {"ID": "40e4a748-2192-161a-0510-9bf59fe950b5", "Node": self.node,
                         "Address": NODE_ADDRESS, "Datacenter": self.datacenter,
                         "TaggedAddresses": {"lan": NODE_ADDRESS, "wan": NODE_ADDRESS},
                         "Meta": {}, "CreateIndex": 1, "ModifyIndex": 1},
                "Service": {"ID": service.service_id, "Service": service.name,
                            "Tags": service.tags, "Address": service.address,
                            "TaggedAddresses": service.tagged_addresses, "Meta": service.meta,
                            "Port": service.port,
                            "Weights": service.weights, "EnableTagOverride": False,
                            "Kind": "", "Proxy": {}, "Connect": {}, "Namespace": "default",
                            "CreateIndex": service.modify_index,
                            "ModifyIndex": service.modify_index},
                "Checks": checks,
            })
        return entries

    # ---- HTTP ------------------------------------------------------------------------------
    def _handler(agent) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                agent._connections.add(self.connection)

            def finish(self) -> None:
                agent._connections.discard(self.connection)
                super().finish()

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _answer(self, status: int, body: bytes, content_type: str,
                        index: int | None = None, filtered: bool = False) -> None:
                """`filtered`: entries the token may not read were left out of `body`."""
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                if filtered:
                    self.send_header("X-Consul-Results-Filtered-By-ACLs", "true")
                if index is not None:
                    self.send_header("X-Consul-Index", str(max(index, 1)))
                    self.send_header("X-Consul-KnownLeader", "true")
                    self.send_header("X-Consul-LastContact", "0")
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, text: str) -> None:
                self._answer(status, text.encode(), "text/plain; charset=utf-8")

            def _token(self, url: Any) -> str | None:
                """The request's ACL token, wherever Consul takes it from."""
                bearer = self.headers.get("Authorization", "")
                return (self.headers.get("X-Consul-Token")
                        or (bearer[7:] if bearer.lower().startswith("bearer ") else "")
                        or parse_qs(url.query).get("token", [""])[0] or None)

            def _access(self, url: Any) -> str | None:
                """Record the request's token and judge it: "allowed", "anonymous" (no token
                while ACLs are enforced), or None after answering 403 `ACL not found` for a
                token the agent does not know."""
                token = self._token(url)
                agent.tokens.append(token)
                if agent.acl_token is None or token == agent.acl_token:
                    return "allowed"
                if token is None:
                    return "anonymous"
                self._error(403, "ACL not found")
                return None

            def _may_write(self, url: Any) -> bool:
                """Whether the request may change state (else answered with a 403)."""
                access = self._access(url)
                if access == "anonymous":
                    self._error(403, "Permission denied")
                return access == "allowed"

            def do_PUT(self) -> None:
                url = urlparse(self.path)
                agent.requests.append(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if not self._may_write(url):
                    return
                if url.path == "/v1/agent/service/register":
                    try:
                        agent.register(json.loads(body or b"{}"))
                    except (ValueError, TypeError) as exc:
                        self._error(400, f"Invalid service definition: {exc}")
                        return
                    self._answer(200, b"", "text/plain")
                elif url.path.startswith("/v1/agent/service/deregister/"):
                    service_id = unquote(url.path.rsplit("/", 1)[1])
                    if not agent.deregister(service_id):
                        self._error(404, f'Unknown service ID "{service_id}". Ensure that the '
                                         "service ID is passed, not the service name.")
                        return
                    self._answer(200, b"", "text/plain")
                elif url.path.startswith("/v1/kv/"):
                    flags = parse_qs(url.query).get("flags", ["0"])[0]
                    agent.kv_put(unquote(url.path.removeprefix("/v1/kv/")), body, int(flags))
                    self._answer(200, b"true", "application/json")
                else:
                    self._error(404, "")

            def do_DELETE(self) -> None:
                url = urlparse(self.path)
                agent.requests.append(self.path)
                if not self._may_write(url):
                    return
                if not url.path.startswith("/v1/kv/"):
                    self._error(404, "")
                    return
                query = parse_qs(url.query, keep_blank_values=True)
                agent.kv_delete(unquote(url.path.removeprefix("/v1/kv/")), "recurse" in query)
                self._answer(200, b"true", "application/json")

            def _blocking(self, query: dict[str, list[str]]) -> tuple[float, int] | None:
                """(wait, index) of a blocking query, or None after answering 400."""
                try:
                    wait = min(go_duration(query["wait"][0]), MAX_WAIT_S) \
                        if "wait" in query else DEFAULT_WAIT_S
                except ValueError:
                    self._error(400, "Invalid wait time")
                    return None
                try:
                    wanted = int(query["index"][0]) if "index" in query else 0
                    if wanted < 0:
                        raise ValueError
                except ValueError:
                    self._error(400, "Invalid index")
                    return None
                return wait, wanted

            def _block(self, source: "FakeConsul", wait: float, wanted: int, index_now) -> None:
                """Wait (holding `source.changed`) until `index_now()` passes `wanted` or `wait`
                ends; `source` is the agent of the datacenter asked (`_datacenter`)."""
                if wanted:
                    deadline = time.monotonic() + wait
                    source.changed.wait_for(
                        lambda: index_now() > wanted or agent._stopping.is_set()
                        or source._stopping.is_set() or time.monotonic() >= deadline,
                        timeout=wait,
                    )

            def _datacenter(self, query: dict[str, list[str]]) -> "FakeConsul | None":
                """The agent whose state answers for `?dc=`, or None after answering 500 as
                Consul does for a datacenter it has no path to or cannot reach."""
                wanted = query.get("dc", [""])[0]
                if not wanted or wanted == agent.datacenter:
                    return agent
                for other in agent.federation:
                    if other.datacenter == wanted:
                        if other.running:
                            return other
                        self._error(500, "Remote DC has no server currently reachable")
                        return None
                self._error(500, "No path to datacenter")
                return None

            def _kv_get(self, url: Any) -> None:
                key = unquote(url.path.removeprefix("/v1/kv/"))
                query = parse_qs(url.query, keep_blank_values=True)
                blocking = self._blocking(query)
                if blocking is None:
                    return
                source = self._datacenter(query)
                if source is None:
                    return
                recurse = "recurse" in query
                with source.changed:
                    self._block(source, *blocking, lambda: source.kv_entries(key, recurse)[1])
                    entries, index = source.kv_entries(key, recurse)
                if not entries:
                    self._answer(404, b"", "text/plain", index)
                    return
                self._answer(200, json.dumps(entries).encode(), "application/json", index)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                agent.requests.append(self.path)
                access = self._access(url)
                if access is None:
                    return
                if url.path.startswith("/v1/kv/"):
                    if access == "anonymous":
                        self._error(403, "Permission denied")
                        return
                    self._kv_get(url)
                    return
                query = parse_qs(url.query, keep_blank_values=True)
                if url.path == "/v1/catalog/datacenters":
                    self._answer(200, json.dumps(agent.datacenters()).encode(), "application/json")
                    return
                if url.path == "/v1/agent/services":
                    with agent.changed:
                        services = agent.agent_services() if access == "allowed" else {}
                    self._answer(200, json.dumps(services).encode(), "application/json",
                                 filtered=access == "anonymous")
                    return
                if url.path == "/v1/catalog/services":
                    source = self._datacenter(query)
                    if source is None:
                        return
                    with source.changed:
                        catalog = source.catalog() if access == "allowed" else {}
                        index = source.index
                    self._answer(200, json.dumps(catalog).encode(), "application/json", index,
                                 filtered=access == "anonymous")
                    return
                if not url.path.startswith("/v1/health/service/"):
                    self._error(404, "")
                    return
                name = unquote(url.path.removeprefix("/v1/health/service/"))
                if not name:
                    self._error(400, "Missing service name")
                    return
                passing = False
                if "passing" in query:
                    value = query["passing"][0]
                    if value and value not in _TRUE | _FALSE:
                        self._error(400, "Invalid value for ?passing")
                        return
                    passing = value == "" or value in _TRUE
                blocking = self._blocking(query)
                if blocking is None:
                    return
                source = self._datacenter(query)
                if source is None:
                    return
                with source.changed:
                    self._block(source, *blocking, lambda: source.index)
                    entries = source.health_entries(name, passing) if access == "allowed" else []
                    index = source.index
                self._answer(200, json.dumps(entries).encode(), "application/json", index,
                             filtered=access == "anonymous")

        return Handler


def main() -> None:
    """Serve until SIGTERM; one JSON line per agent on stdout says where, once it listens."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="A fake Consul agent for tests.")
    parser.add_argument("--listen", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--datacenter", default="dc1", help="the agent's datacenter")
    parser.add_argument("--federate", action="append", default=[], metavar="DC@ADDRESS",
                        help="also an agent of datacenter DC on ADDRESS, federated with the "
                             "others as over the WAN (agents federate within one process)")
    args = parser.parse_args()
    agents = [FakeConsul(args.listen, datacenter=args.datacenter)]
    for spec in args.federate:
        datacenter, _, address = spec.partition("@")
        if not datacenter or not address:
            parser.error(f"--federate {spec!r} is not DC@ADDRESS")
        other = FakeConsul(address, datacenter=datacenter)
        for agent in agents:
            agent.federate(other)
        agents.append(other)
    for agent in agents:
        agent.start()
        print(json.dumps({"msg": "fake consul listening", "listen": f"{agent.host}:{agent.port}",
                          "datacenter": agent.datacenter}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    for agent in agents:
        agent.stop()


if __name__ == "__main__":
    main()
