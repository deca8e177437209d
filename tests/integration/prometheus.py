"""A real Prometheus for the tests: scraping proxies over mTLS, and asked over its HTTP API."""

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import yaml

from identity import pki
from tests.integration.mesh import TRUST_DOMAIN
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
                        # Prometheus cannot read a SPIFFE ID: it checks the proxy's chain
                        # and the DNS name every proxy leaf carries, as docs/prometheus does
                        "tls_config": {
                            "ca_file": str(certificates / "bundle.pem"),
                            "cert_file": str(certificates / "cert.pem"),
                            "key_file": str(certificates / "key.pem"),
                            "server_name": pki.proxy_dns_name(TRUST_DOMAIN),
                        },
                        "static_configs": [{"targets": list(targets)}],
                    }
                ],
            }
        )
    )


DOCS = Path(__file__).resolve().parents[2] / "docs" / "prometheus"


def documented_config(path: Path, certificates: Path, targets: Path) -> None:
    """Write docs/prometheus/prometheus.yml with its paths moved here (the scraper's
    `certificates`, the `targets` file `vmesh targets` wrote, the documented rules), scraping
    every second."""
    config = yaml.safe_load(
        (DOCS / "prometheus.yml").read_text()
        .replace("/var/lib/vmesh/prometheus", str(certificates))
        .replace("/etc/prometheus/vmesh-targets.json", str(targets))
        .replace("/etc/prometheus/vmesh-alerts.yml", str(DOCS / "vmesh-alerts.yml")))
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s"}
    path.write_text(yaml.safe_dump(config))


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
    raise AssertionError(
        f"Prometheus never answered {promql!r} as expected; last: {result}; "
        f"scrape errors: {scrape_errors(url)}"
    )


def scrape_errors(url: str) -> dict[str, str]:
    """Each failing target's last scrape error (a refused certificate, say), by address."""
    targets = httpx.get(url.replace("/query", "/targets"), timeout=5).json()
    return {target["scrapeUrl"]: target["lastError"]
            for target in targets["data"]["activeTargets"] if target["lastError"]}
