"""A bounded load generator: `python -m tests.e2e.loadgen --port P --service S ...`.

Sends GET requests (or, with `--method POST`, small POSTs) to a local outbound proxy
(`Host: <service>`) from a few workers, each on a keep-alive connection, at a fixed total
rate, until SIGTERM, `--max-requests` or `--max-seconds` - whichever comes first. Every
answer that is not a 200 (or no answer at all) counts as failed. Prints one JSON summary on
stdout at the end.
"""

import argparse
import http.client
import json
import signal
import threading
import time
from collections import Counter

TIMEOUT_S = 10.0


class Load:
    def __init__(self, port: int, service: str, rate: float, max_requests: int,
                 max_seconds: float, method: str = "GET") -> None:
        self.port = port
        self.service = service
        self.method = method
        self.body = b'{"load": 1}' if method == "POST" else None
        self.interval = 1.0 / rate
        self.max_requests = max_requests
        self.deadline = time.monotonic() + max_seconds
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.next_at = time.monotonic()
        self.backends: Counter[str] = Counter()
        self.failures: list[dict] = []

    def _ticket(self) -> float | None:
        """The time the next request may go, or None when a bound is reached."""
        with self.lock:
            if self.stop.is_set() or self.sent >= self.max_requests:
                return None
            self.sent += 1
            at, self.next_at = self.next_at, max(self.next_at, time.monotonic()) + self.interval
        if at > self.deadline:
            return None
        return at

    def worker(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
        while (at := self._ticket()) is not None:
            if self.stop.wait(max(0.0, at - time.monotonic())):
                break
            started = time.time()
            try:
                conn.request(self.method, "/load", body=self.body,
                             headers={"Host": self.service})
                response = conn.getresponse()
                body = response.read()
                if response.status == 200:
                    with self.lock:
                        self.backends[json.loads(body)["name"]] += 1
                    continue
                failure = {"status": response.status, "body": body[:300].decode("replace")}
            except (OSError, http.client.HTTPException, ValueError) as exc:
                failure = {"error": f"{type(exc).__name__}: {exc}"}
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
            with self.lock:
                self.failures.append({"at": started, **failure})
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="the outbound proxy's port")
    parser.add_argument("--service", required=True)
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second, total")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--method", choices=["GET", "POST"], default="GET")
    parser.add_argument("--max-requests", type=int, required=True)
    parser.add_argument("--max-seconds", type=float, required=True)
    args = parser.parse_args()
    load = Load(args.port, args.service, args.rate, args.max_requests, args.max_seconds,
                args.method)
    signal.signal(signal.SIGTERM, lambda *_: load.stop.set())
    started = time.monotonic()
    workers = [threading.Thread(target=load.worker) for _ in range(args.workers)]
    for thread in workers:
        thread.start()
    print("STARTED", flush=True)
    for thread in workers:
        thread.join()
    ok = sum(load.backends.values())
    print(json.dumps({"ok": ok, "failed": len(load.failures), "failures": load.failures[:20],
                      "backends": dict(load.backends),
                      "seconds": round(time.monotonic() - started, 1)}), flush=True)


if __name__ == "__main__":
    main()
