"""A real Prometheus for the tests: scraping proxies over mTLS, and asked over its HTTP API."""

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from tests.support import free_port, require_tool


def scrape_config(path: Path, certificates: Path, *, targets: tuple[str, ...],
                  rule_files: tuple[Path, ...] = ()) -> None:
    """Write a config that scrapes the proxies' admin `targets` every second with
    `certificates`."""
    path.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                           "evaluation_interval": "1s"},
                "rule_files": [str(rules) for rules in rule_files],
                "scrape_configs": [
                    {
                        "job_name": "vmesh",
                        "scheme": "https",
                        # proxy leaves carry a SPIFFE ID and no host name, so Prometheus cannot
                        # check a name; the proxy still verifies Prometheus' mesh certificate
                        "tls_config": {
                            "ca_file": str(certificates / "bundle.pem"),
                            "cert_file": str(certificates / "cert.pem"),
                            "key_file": str(certificates / "key.pem"),
                            "insecure_skip_verify": True,
                        },
                        "static_configs": [{"targets": list(targets)}],
                    }
                ],
            }
        )
    )


@contextlib.contextmanager
def running_prometheus(config: Path, data: Path) -> Iterator[str]:
    """Run Prometheus on `config`; yields the URL of its instant-query API."""
    port = free_port()
    process = subprocess.Popen(
        [
            require_tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}/api/v1/query"
    finally:
        process.terminate()
        process.wait(timeout=20)


def query(url: str, promql: str) -> list:
    """One instant query; AssertionError with Prometheus' reason when it refuses the query."""
    answer = httpx.get(url, params={"query": promql}, timeout=5)
    body = answer.json()
    assert body["status"] == "success", f"{promql!r}: {body.get('error')}"
    return body["data"]["result"]


def query_until(url: str, promql: str, predicate: Callable[[list], bool],
                within: float = 60.0) -> list:
    """Ask Prometheus until the answer satisfies `predicate` (scrapes come every second)."""
    deadline = time.monotonic() + within
    result: list = []
    while time.monotonic() < deadline:
        try:
            result = query(url, promql)
            if predicate(result):
                return result
        except (httpx.TransportError, json.JSONDecodeError):
            pass  # Prometheus is still starting
        time.sleep(0.5)
    raise AssertionError(f"Prometheus never answered {promql!r} as expected; last: {result}")
