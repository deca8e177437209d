"""An OTLP/HTTP trace receiver on a real loopback socket, as a collector or Jaeger serves it.

Jaeger and the OpenTelemetry collector are not packaged for Debian, so tests send spans
here. It keeps the OTLP/HTTP contract for JSON: `POST /v1/traces` with
`Content-Type: application/json` and an `ExportTraceServiceRequest` body
(`resourceSpans` > `scopeSpans` > `spans`) answers 200 with an empty
`ExportTraceServiceResponse`; another path is 404, another media type 415, a
body that is not that JSON 400, one over `max_body` 413. `refuse_next` makes it answer
the next POSTs as an overloaded or strict collector does (429 with `Retry-After`, 503,
400...), keeping nothing.
"""

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class OtlpReceiver:
    """Keeps every span received, with the resource attributes of its batch."""

    def __init__(self, address: str = "127.0.0.1", max_body: int | None = None) -> None:
        """Listen on `address` (a free port), loopback unless test hosts must reach it;
        a body over `max_body` bytes is refused with 413, as a collector's limit does."""
        self.max_body = max_body
        self.spans: list[dict[str, Any]] = []  # each span, plus "resource": {key: value}
        self.posted = threading.Event()  # set by each POST as it arrives
        self.answering = threading.Event()  # cleared: answers wait (a slow collector)
        self.answering.set()
        self.posts = 0  # POSTs answered, refused ones included
        self._refusals: deque[tuple[int, dict[str, str], dict[str, Any]]] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((address, 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1/traces"

    def start(self) -> "OtlpReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def refuse_next(self, status: int, headers: dict[str, str] | None = None,
                    body: dict[str, Any] | None = None) -> None:
        """Answer one more POST (after those already refused) with `status`, `headers` and
        `body` (a 200 with `partialSuccess`: the collector refused some spans of the batch)."""
        with self._lock:
            self._refusals.append((status, headers or {}, body or {"message": "refused"}))

    def of_trace(self, trace_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [s for s in self.spans if s["traceId"] == trace_id]

    def _keep(self, body: dict[str, Any]) -> None:
        received = []
        for resource_spans in body["resourceSpans"]:
            resource = {a["key"]: next(iter(a["value"].values()))
                        for a in resource_spans["resource"]["attributes"]}
            for scope_spans in resource_spans["scopeSpans"]:
                received += [{**s, "resource": resource} for s in scope_spans["spans"]]
        with self._lock:
            self.spans += received

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.posted.set()
                receiver.answering.wait(timeout=30)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    receiver.posts += 1
                    refusal = receiver._refusals.popleft() if receiver._refusals else None
                if refusal is not None:
                    return self._answer(refusal[0], refusal[2], refusal[1])
                if receiver.max_body is not None and len(body) > receiver.max_body:
                    return self._answer(413, {"message": "request body too large"})
                if self.path != "/v1/traces":
                    return self._answer(404, {})
                if self.headers.get("content-type", "").split(";")[0] != "application/json":
                    return self._answer(415, {})
                try:
                    receiver._keep(json.loads(body))
                except (ValueError, KeyError, TypeError, AttributeError):
                    return self._answer(400, {"message": "not an ExportTraceServiceRequest"})
                return self._answer(200, {})

            def _answer(self, status: int, body: dict[str, Any],
                        headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
