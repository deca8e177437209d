"""The Grafana dashboard and the alerting rules in docs/ read what the proxies serve: a real
Prometheus scrapes a real mesh carrying traffic, and every panel's query is valid PromQL on
series the proxies export; the golden panels show the traffic sent, and the rules load and
fire when they should (promtool's rule tests)."""

import json
import re
import socket
import ssl
import subprocess
from pathlib import Path

import httpx

from tests.integration.mesh import Mesh
from tests.integration.processes import start_backend
from tests.integration.prometheus import query, query_until, running_prometheus, scrape_config
from tests.support import require_tool

DOCS = Path(__file__).resolve().parents[2] / "docs"
DASHBOARD = DOCS / "grafana" / "vmesh-golden.json"
ALERTS = DOCS / "prometheus" / "vmesh-alerts.yml"
REQUESTS = 30
BATCH = 10
# what Grafana puts in place of the dashboard's variables: every service, and a window long
# enough that the rates of the test's few seconds of traffic stay above zero while it asks
VARIABLES = {"$service": ".*", "$__rate_interval": "5m"}
# a selector: a name before `{` or a range `[` (the dashboard writes `name{}` for a bare one)
METRIC = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)[{\[]")


def _panels() -> dict[str, list[str]]:
    """Each panel's title and its queries, with the variables filled in as Grafana would."""
    panels = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        if panel["type"] == "row":
            continue
        queries = []
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            queries.append(expr)
        panels[panel["title"]] = queries
    return panels


def _exported_families(proxies) -> set[str]:
    """The metric families the proxies' /metrics declare (`# TYPE` lines), served series or not."""
    families = set()
    for proxy in proxies:
        with proxy.admin() as admin:
            text = admin.get("/metrics").text
        families |= {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    return families


def _family(series_name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if series_name.endswith(suffix):
            return series_name.removesuffix(suffix)
    return series_name


def _refused_handshake(port: int) -> None:
    """A caller without a client certificate: the inbound proxy refuses the handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="web") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
                tls.recv(100)
        except (ssl.SSLError, ConnectionError):
            pass  # refused during or right after the handshake


def test_every_panel_reads_the_proxies_and_the_golden_ones_show_the_traffic(
    tmp_path: Path,
) -> None:
    mesh = Mesh(tmp_path)
    backend = start_backend("web")
    try:
        _panels_show_the_mesh(mesh, backend.port, tmp_path)
    finally:
        mesh.stop()
        backend.stop()


def _panels_show_the_mesh(mesh: Mesh, app_port: int, tmp_path: Path) -> None:
    web = mesh.start_proxy("web", app_port)
    front = mesh.start_proxy("front", 1)
    scraper = mesh.issue("prometheus", directory=tmp_path / "scraper", kind="operator")
    config = tmp_path / "prometheus.yml"
    proxies = (web, front)
    scrape_config(config, scraper, targets=tuple(f"127.0.0.1:{p.ports['admin']}" for p in proxies),
                  rule_files=(ALERTS,))
    panels = _panels()
    families = _exported_families(proxies)
    for title, queries in panels.items():
        for expr in queries:
            named = {_family(name) for name in METRIC.findall(expr)}
            assert named, f"{title}: {expr!r} names no metric"
            assert named <= families, f"{title}: {sorted(named - families)} not exported"

    with running_prometheus(config, tmp_path / "tsdb") as url:
        query_until(url, "up", lambda result: len(result) == 2 and all(
            r["value"][1] == "1" for r in result))
        with httpx.Client(base_url=f"http://{front.outbound}") as client:
            # traffic in batches, each scraped before the next, so that rates have samples to go by
            for sent in range(BATCH, REQUESTS + 1, BATCH):
                for n in range(BATCH):
                    assert client.get(f"/items/{n}", headers={"host": "web"}).status_code == 200
                # both proxies' scrapes must have seen the batch: the golden panels read the
                # inbound side (web), the reuse panel the outbound side (front)
                query_until(url, 'sum by (direction) (request_total{dst_service="web"})',
                            lambda result, sent=sent: len(result) == 2
                            and all(float(r["value"][1]) == sent for r in result))
            assert client.get("/", headers={"host": "nowhere"}).status_code == 503
        _refused_handshake(web.ports["inbound"])

        def shown(title: str, index: int = 0) -> list:
            return query_until(url, panels[title][index], lambda result: bool(result))

        rate = shown("Request rate")
        assert [r["metric"] for r in rate] == [{"dst_service": "web"}]
        assert float(rate[0]["value"][1]) > 0
        success = shown("Success rate")
        assert [(r["metric"], float(r["value"][1])) for r in success] == [
            ({"dst_service": "web"}, 1.0)]
        for index in range(3):  # p50, p95, p99
            latency = shown("Latency p50 / p95 / p99", index)
            assert latency[0]["metric"] == {"dst_service": "web"}
            assert float(latency[0]["value"][1]) > 0
        callers = shown("Requests by caller and destination")
        assert {r["metric"]["dst_service"] for r in callers} >= {"web"}
        assert {r["metric"]["client_id"] for r in callers} == {"spiffe://vmesh.local/svc/front"}
        errors = shown("Errors by reason")
        assert {(r["metric"]["dst_service"], r["metric"]["error"]) for r in errors} == {
            ("nowhere", "no_endpoints")}
        reuse = shown("Requests per connection between proxies")
        assert float(reuse[0]["value"][1]) > 1  # pooled: fewer handshakes than requests
        refused = shown("Refused handshakes and denied requests")
        assert [r["metric"] for r in refused] == [
            {"direction": "inbound", "error": "tls.handshake_failed"}]
        left = shown("Leaf certificate time left")
        assert len(left) == 2
        assert all(0 < float(r["value"][1]) <= 24 * 3600 for r in left)
        for queries in panels.values():  # the rest: valid, if nothing to show yet
            for expr in queries:
                query(url, expr)

        rules = httpx.get(url.replace("/query", "/rules"), timeout=5).json()["data"]["groups"]
        loaded = {rule["name"]: rule for group in rules for rule in group["rules"]}
        assert set(loaded) == {"VmeshLeafCertificateNotRenewed", "VmeshLeafCertificateExpired",
                               "VmeshLowSuccessRate", "VmeshRefusedHandshakes",
                               "VmeshProxyNotScraped"}
        assert all(rule["health"] != "err" for rule in loaded.values())


ALERT_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # a proxy whose renewal stopped: its leaf expires 3 h after the test's start
      - series: 'identity_cert_expiration_timestamp_seconds{{instance="web:4191"}}'
        values: '10800x20'
      # one whose leaf was renewed in time: 20 h left
      - series: 'identity_cert_expiration_timestamp_seconds{{instance="api:4191"}}'
        values: '72000x20'
      # api answers 10 a second, one in ten failing; web all well
      - series: 'response_total{{direction="inbound", dst_service="api", classification="success"}}'
        values: '0+540x20'
      - series: 'response_total{{direction="inbound", dst_service="api", classification="failure"}}'
        values: '0+60x20'
      - series: 'response_total{{direction="inbound", dst_service="web", classification="success"}}'
        values: '0+600x20'
      # web's proxy stops answering scrapes after 2 minutes; api's goes on
      - series: 'up{{job="vmesh", instance="web:4191"}}'
        values: '1 1 0x18'
      - series: 'up{{job="vmesh", instance="api:4191"}}'
        values: '1x20'
    alert_rule_test:
      - eval_time: 10m
        alertname: VmeshLeafCertificateNotRenewed
        exp_alerts:
          - exp_labels: {{severity: warning, instance: "web:4191"}}
            exp_annotations:
              summary: "web:4191: leaf certificate not renewed, 2h 50m 0s left"
              description: >-
                The proxy keeps serving on its current leaf until it expires; then peers refuse
                its handshakes. See `vmesh certs` and the proxy's log (renewal failures name the
                identity service and the reason).
      - eval_time: 10m
        alertname: VmeshLeafCertificateExpired
        exp_alerts: []
      - eval_time: 12m
        alertname: VmeshLowSuccessRate
        exp_alerts:
          - exp_labels: {{severity: warning, dst_service: api}}
            exp_annotations:
              summary: "api: 90% of requests succeed"
      - eval_time: 6m
        alertname: VmeshProxyNotScraped
        exp_alerts: []
      - eval_time: 8m
        alertname: VmeshProxyNotScraped
        exp_alerts:
          - exp_labels: {{severity: warning, job: vmesh, instance: "web:4191"}}
            exp_annotations:
              summary: "web:4191: Prometheus cannot scrape the proxy"
              description: >-
                Either the proxy is down (`vmesh check` on its host) or Prometheus' certificate no
                longer works for it; when every proxy is down at once, it is the certificate: see
                the target's error on Prometheus' targets page and the log of
                `vmesh cert-helper prometheus`.
"""


def test_the_alerting_rules_fire_on_a_stale_leaf_a_failing_service_and_a_lost_proxy(
        tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(ALERTS)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(ALERT_TESTS.format(rules=json.dumps(str(ALERTS))))
    run = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
