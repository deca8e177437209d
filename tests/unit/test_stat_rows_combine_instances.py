"""`vmesh stat` rows: one per service, instances combined, unreachable ones counted."""

from console.api import ProxyStats
from console.models.overview import SourceStatus, combine, stat_rows
from tests.console.scenes import stats_json


def status(name: str, service: str, rps: float, success: float, p99: float,
           reachable: bool = True) -> SourceStatus:
    s = SourceStatus(name, f"/run/vmesh/{name}.sock")
    if reachable:
        s.succeeded(0.0)
        s.ready = True
        s.stats = ProxyStats.from_json(stats_json(service, rps, success, 1.0, p99))
    else:
        s.failed("admin.connect_refused", "refused")
    return s


def test_instances_of_a_service_add_up() -> None:
    rows = stat_rows([status("api-1", "api", 30, 1.0, 10), status("api-2", "api", 10, 0.6, 90),
                      status("web", "web", 5, 1.0, 5)])
    api = rows[0]
    assert (api.name, api.meshed, api.tcp_conn) == ("api", "2/2", 6)
    assert api.golden is not None
    assert api.golden.rps == 40
    assert round(api.golden.success_rate or 0, 3) == 0.9  # weighted by rate
    assert api.golden.p99_ms == 90  # the worst instance bounds the service


def test_unreachable_instance_lowers_meshed_count() -> None:
    rows = stat_rows([status("api", "api", 3, 1.0, 5), status("cache", "", 0, 0, 0, False)])
    assert [(r.name, r.meshed, r.golden is None) for r in rows] == [
        ("api", "1/1", False), ("cache", "0/1", True)]


def test_combine_of_nothing_is_zero_rate_unknown_success() -> None:
    golden = combine([])
    assert (golden.rps, golden.success_rate, golden.p50_ms) == (0, None, None)
