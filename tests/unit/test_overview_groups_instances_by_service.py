"""The overview lists each service with its golden metrics, then its instances under it."""

from console.api import ProxyStats
from console.models.overview import overview_rows
from tests.console.scenes import stats_json
from tests.unit.test_stat_rows_combine_instances import status


def test_a_service_line_combines_its_instances_listed_under_it() -> None:
    api_2 = status("api-2", "api", 10, 0.6, 90)
    api_2.stats = ProxyStats.from_json({**stats_json("api", 10, 0.6, 1.0, 90), "version": "0.2"})
    rows = overview_rows([status("web", "web", 5, 1.0, 5), api_2,
                          status("api-1", "api", 30, 1.0, 10)])
    assert [(r.name, r.service, r.nested, r.state) for r in rows] == [
        ("api", True, False, "2/2 ready"),
        ("api-1", False, True, "ready"),
        ("api-2", False, True, "ready"),
        ("web", False, False, "ready"),  # one instance of the same name: one line
    ]
    api = rows[0]
    assert api.golden is not None and (api.golden.rps, api.golden.p99_ms) == (40, 90)
    assert round(api.golden.success_rate or 0, 3) == 0.9  # weighted by rate
    assert (api.version, api.address, api.health) == ("0.1.0,0.2", "2 instances", "ok")


def test_an_unreachable_instance_degrades_its_service_and_shows_no_old_metrics() -> None:
    gone = status("api-2", "api", 10, 0.6, 90)
    gone.failed("admin.connect_refused", "refused")  # it answered before, then died
    rows = {r.name: r for r in overview_rows([status("api-1", "api", 30, 1.0, 10), gone])}
    assert (rows["api"].state, rows["api"].health) == ("1/2 ready", "degraded")
    assert rows["api"].golden is not None and rows["api"].golden.rps == 30
    assert (rows["api-2"].state, rows["api-2"].health, rows["api-2"].golden) == (
        "unreachable", "down", None)
    assert rows["api-2"].version == "0.1.0"  # what it ran when last seen


def test_a_service_whose_instances_all_died_is_down_without_metrics() -> None:
    instances = [status(f"db-{n}", "db", 1, 1.0, 1) for n in (1, 2)]
    for instance in instances:
        instance.failed("admin.connect_refused", "refused")
    service = overview_rows(instances)[0]
    assert (service.name, service.state, service.health, service.golden) == (
        "db", "0/2 ready", "down", None)
