"""The Grafana dashboard and the alerting rules in docs/ read what the proxies serve: a real
Prometheus scrapes a real mesh carrying traffic, and every panel's and every alert's query is
valid PromQL on metric names, labels and label values the proxies serve; the golden panels
show the traffic sent, and the rules load and fire when they should (promtool's rule tests,
in tests/integration/alerts/ and below)."""

import json
import re
import shlex
import socket
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from tests.integration.mesh import Mesh, wait_until
from tests.integration.processes import start_backend
from tests.integration.prometheus import query, query_until, running_prometheus, scrape_config
from tests.integration.promql_vocabulary import served_series, unserved
from tests.support import require_tool
from vm_mesh.cli import build_parser

DOCS = Path(__file__).resolve().parents[2] / "docs"
DASHBOARD = DOCS / "grafana" / "vmesh-golden.json"
ALERTS = DOCS / "prometheus" / "vmesh-alerts.yml"
ALERT_TESTS_DIR = Path(__file__).resolve().parent / "alerts"
REQUESTS = 30
BATCH = 10
# what Grafana puts in place of the dashboard's variables: every service, and a window long
# enough that the rates of the test's few seconds of traffic stay above zero while it asks
VARIABLES = {"$service": ".*", "$__rate_interval": "5m"}
# a selector: a name before `{` or a range `[` (the dashboard writes `name{}` for a bare one)
ROUTE = """\
kind: HTTPRoute
name: items
service: web
rules:
  - matches:
      - path: {prefix: /items/}
"""
REUSE = "Connections opened per request between proxies"
# a window in which a pooled connection can carry all the requests (scrapes every second)
POOLED_WINDOW = "4s"
POOLED_REQUESTS = 500
ROUTE_ALERTS = ("VmeshRouteErrorBudgetBurnFast", "VmeshRouteErrorBudgetBurnSlow",
                "VmeshRouteLatencyBudgetBurnFast", "VmeshRouteLatencyBudgetBurnSlow")
METRIC = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)[{\[]")
# families the queries read that this mesh's traffic does not produce (they need policy:
# retries, a traffic split, an Authorization): only their names are checked, by `# TYPE`
NOT_PRODUCED_HERE = {"route_retry_total", "route_backend_request_total", "authz_decision_total"}


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


def _alerts() -> dict[str, tuple[str, str]]:
    """Each alert's expression and its annotations and labels (their `$labels` templates)."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: (rule["expr"], json.dumps([rule.get("annotations"),
                                                      rule.get("labels")]))
            for group in groups for rule in group["rules"]}


def _metrics_texts(proxies) -> dict[str, str]:
    """Each proxy's /metrics, by its admin address (the `instance` Prometheus gives it)."""
    texts = {}
    for proxy in proxies:
        with proxy.admin() as admin:
            texts[f"127.0.0.1:{proxy.ports['admin']}"] = admin.get("/metrics").text
    return texts


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


def _no_instance_for_opaque_tcp(front) -> None:
    """An opaque TCP connection that finds no instance: the proxy closes it, counted with the
    reason `no_endpoints`."""
    with socket.create_connection(("127.0.0.1", front.ports["tcp:vault"]), timeout=10) as sock:
        assert sock.recv(100) == b""
    wait_until(lambda: front.metric("tcp_close_total", dst_service="vault",
                                    error="no_endpoints") == 1,
               what="the connection closed for want of an instance")


def _reuse_shows_traffic_on_pooled_connections(url: str, front, expr: str) -> None:
    """In a window where every request went on a connection pooled before it (the steady
    state of keep-alive), the reuse panel shows 0 connections opened per request (it showed
    requests per connection, then infinite)."""
    expr = expr.replace("[5m]", f"[{POOLED_WINDOW}]")
    window = f'[{POOLED_WINDOW}]'
    quiet = (f'sum(increase(request_total{{direction="outbound"}}{window})) > 0 and '
             f'sum(increase(connection_open_total{{direction="outbound"}}{window})) == 0')
    with httpx.Client(base_url=f"http://{front.outbound}") as client:
        # requests go on, on the pooled connection, until a whole window has opened none
        for n in range(POOLED_REQUESTS):
            assert client.get(f"/items/{n}", headers={"host": "web"}).status_code == 200
            if query(url, quiet):
                break
        else:
            raise AssertionError(f"no window without a connection opened: {query(url, expr)}")
        assert [r["value"][1] for r in query(url, expr)] == ["0"]


def _queries_read_what_the_proxies_serve(panels: dict[str, list[str]], proxies) -> None:
    """Every metric name, label and matched value of every panel and alert is one the proxies
    serve (those of NOT_PRODUCED_HERE: declared)."""
    served = served_series(_metrics_texts(proxies), job="vmesh")
    families = _exported_families(proxies)
    queries = [(title, expr, "") for title, exprs in panels.items() for expr in exprs]
    queries += [(alert, expr, templates) for alert, (expr, templates) in _alerts().items()]
    for title, expr, templates in queries:
        named = {name for name in METRIC.findall(expr)}
        assert named, f"{title}: {expr!r} names no metric"
        declared = {_family(name) for name in named & NOT_PRODUCED_HERE}
        assert declared <= families, f"{title}: {sorted(declared - families)} not exported"
        missing = [m for m in unserved(expr, served, templates)
                   if m.split("{")[0] not in NOT_PRODUCED_HERE]
        assert not missing, f"{title}: {missing} not served by the proxies"


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
    # cache has no instance: its requests go to web, its failover
    policy = tmp_path / "etc/vmesh/policy.d/cache.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text("kind: ServicePolicy\nservice: cache\nfailover: [web]\n")
    # the requests for web's /items/ are its route `items`, matched at the caller's proxy
    (policy.parent / "web.yaml").write_text(ROUTE)
    # front also carries opaque TCP for `vault`, of which discovery lists no instance
    front = mesh.start_proxy("front", 1, extra='[[tcp]]\nservice = "vault"\nlisten = "127.0.0.1:0"')
    scraper = mesh.issue("prometheus", directory=tmp_path / "scraper", kind="operator")
    config = tmp_path / "prometheus.yml"
    proxies = (web, front)
    scrape_config(config, scraper, targets=tuple(f"127.0.0.1:{p.ports['admin']}" for p in proxies),
                  rule_files=(ALERTS,))
    panels = _panels()

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
                def both_scraped(result: list, sent: int = sent) -> bool:
                    return len(result) == 2 and all(float(r["value"][1]) == sent
                                                    for r in result)

                query_until(url, 'sum by (direction) (request_total{dst_service="web"})',
                            both_scraped)
            assert client.get("/", headers={"host": "nowhere"}).status_code == 503
            assert client.get("/", headers={"host": "cache"}).status_code == 200
        _refused_handshake(web.ports["inbound"])
        _no_instance_for_opaque_tcp(front)
        _queries_read_what_the_proxies_serve(panels, proxies)

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
        reuse = shown(REUSE)
        assert 0 < float(reuse[0]["value"][1]) < 1  # pooled: fewer handshakes than requests
        refused = shown("Refused handshakes and denied requests")
        assert [r["metric"] for r in refused] == [
            {"direction": "inbound", "error": "tls.handshake_failed"}]
        left = shown("Leaf certificate time left")
        assert len(left) == 2
        assert all(0 < float(r["value"][1]) <= 24 * 3600 for r in left)
        use = shown("Listener use")
        assert {(r["metric"]["instance"], r["metric"]["listener"]) for r in use} >= {
            (f"127.0.0.1:{front.ports['admin']}", name)
            for name in ("inbound", "outbound", "tcp:vault", "admin", "admin-socket")}
        assert all(0 <= float(r["value"][1]) < 1 for r in use)  # far from their caps
        endpoints = shown("Ejected instances and failovers")
        assert {(r["metric"]["dst_service"], r["metric"]["endpoint_state"]): float(r["value"][1])
                for r in endpoints if r["metric"]["dst_service"] == "web"} == {
            ("web", "ready"): 1, ("web", "ejected"): 0}
        failovers = shown("Ejected instances and failovers", 1)
        assert [r["metric"] for r in failovers] == [{"dst_service": "cache", "failover_to": "web"}]
        by_route = shown("Route success rate")
        assert {(r["metric"]["dst_service"], r["metric"]["route"]): float(r["value"][1])
                for r in by_route if r["metric"]["dst_service"] == "web"}[("web", "items")] == 1.0
        slowest = shown("Route latency p99")
        assert any(r["metric"] == {"dst_service": "web", "route": "items"}
                   and float(r["value"][1]) > 0 for r in slowest)
        for alert in ROUTE_ALERTS:  # the traffic each judges: by route, as the routes name it
            judged = _alerts()[alert][0].rsplit(" and ", 1)[1].split(" > ")[0]
            routes = query_until(url, judged, lambda result: bool(result))
            assert {(r["metric"]["dst_service"], r["metric"]["route"]) for r in routes} >= {
                ("web", "items")}, alert
        _reuse_shows_traffic_on_pooled_connections(url, front, panels[REUSE][0])
        for queries in panels.values():  # the rest: valid, if nothing to show yet
            for expr in queries:
                query(url, expr)

        rules = httpx.get(url.replace("/query", "/rules"), timeout=5).json()["data"]["groups"]
        loaded = {rule["name"]: rule for group in rules for rule in group["rules"]}
        assert loaded
        assert set(loaded) == set(_alerts())
        assert all(rule["health"] != "err" for rule in loaded.values())


def test_the_alerting_rules_are_valid() -> None:
    checked = subprocess.run([require_tool("promtool"), "check", "rules", str(ALERTS)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("tests", sorted(ALERT_TESTS_DIR.glob("*_test.yml")), ids=lambda p: p.stem)
def test_each_alert_fires_on_what_it_watches_and_on_nothing_else(tests: Path) -> None:
    """promtool's unit tests of the rules (tests/integration/alerts/): each alert fires, with
    its labels and annotations, on series shaped as the proxies serve them, and not before
    its `for:` or on the series beside them."""
    run = subprocess.run([require_tool("promtool"), "test", "rules", str(tests)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_has_a_promtool_test() -> None:
    tested = {rule["alertname"]
              for path in ALERT_TESTS_DIR.glob("*_test.yml")
              for case in yaml.safe_load(path.read_text())["tests"]
              for rule in case["alert_rule_test"] if rule["exp_alerts"]}
    assert set(_alerts()) - tested == set()


def test_every_alert_says_where_to_look_with_commands_that_exist() -> None:
    """Each alert's description names a `vmesh` command (or an admin API path) to diagnose
    with, and every `vmesh ...` it names parses, options included (`<host>`: a value)."""
    parser = build_parser()
    for alert, (_, annotations) in _alerts().items():
        description = json.loads(annotations)[0].get("description", "")
        commands = re.findall(r"`(vmesh [^`]*)`", description)
        assert commands or "/v1/" in description, f"{alert}: no command or admin path"
        for command in commands:
            # placeholders such as <host> stand for a value
            words = [re.sub(r"^<.*>$", "x", w) for w in shlex.split(command)[1:]]
            try:
                parser.parse_args(words)
            except SystemExit:
                raise AssertionError(f"{alert}: `{command}` does not parse") from None


def test_the_documented_scrape_interval_gives_the_dashboards_rates_samples() -> None:
    """The dashboard's rates go over $__rate_interval, 4 scrape intervals as Grafana's data
    source assumes them (15 s unless set): Prometheus must scrape at least that often, or a
    window holds one sample and a rate is nothing."""
    config = yaml.safe_load((DOCS / "prometheus" / "prometheus.yml").read_text())
    interval = config.get("global", {}).get("scrape_interval", "1m")  # Prometheus' default
    assert interval in ("5s", "10s", "15s"), interval
    assert "$__rate_interval" in DASHBOARD.read_text()
