"""A demo service: answers JSON, optionally calls the next service through its proxy.

    python -m vm_mesh.demo.app --service web --instance web-1 --port 8001 \
        --outbound 127.0.0.1:8101 --calls api --delay 0.2 --fail-rate 0.1

It is deliberately plain (stdlib only): the point of the demo is the mesh.
"""

import argparse
import contextlib
import json
import random
import socket
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(args: argparse.Namespace) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *values: object) -> None:  # quiet: the proxy logs
            return

        def setup(self) -> None:
            super().setup()
            # headers and body go out in separate writes: without this, Nagle holds the body
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:
            if args.delay:
                time.sleep(random.uniform(0.5, 1.5) * args.delay)
            if random.random() < args.fail_rate:
                self._answer(
                    503,
                    {
                        "service": args.service,
                        "instance": args.instance,
                        "error": "simulated failure",
                    },
                )
                return
            downstream = None
            if args.calls:
                downstream = self._call(args.calls, self.path)
            self._answer(
                200,
                {
                    "service": args.service,
                    "instance": args.instance,
                    "path": self.path,
                    "caller": self.headers.get("vmesh-client-id"),
                    "downstream": downstream,
                },
            )

        def _call(self, service: str, path: str) -> dict[str, object]:
            request = urllib.request.Request(
                f"http://{args.outbound}{path}", headers={"Host": service}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    try:
                        further = json.loads(response.read()).get("downstream")
                    except (ValueError, AttributeError):
                        further = None
                    return {"service": service, "status": response.status, "downstream": further}
            except urllib.error.HTTPError as error:
                return {"service": service, "status": error.code}
            except OSError as error:
                return {"service": service, "error": str(error)}

        def _answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--service", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--outbound", help="host:port of this instance's outbound proxy")
    parser.add_argument("--calls", help="the service to call for every request")
    parser.add_argument("--delay", type=float, default=0.0, help="mean seconds per answer")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of 503 answers")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args))
    server.daemon_threads = True
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
