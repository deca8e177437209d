"""`top`: rows merged on source/destination/method/path, with linkerd top's columns."""

from console.models.top import TopTable
from tests.console.scenes import NOW, tap_event

AN_HOUR_AGO = NOW.timestamp() - 3600  # when the tables below began to watch


def test_rows_merge_on_key_columns_and_keep_best_worst_last() -> None:
    table = TopTable(AN_HOUR_AGO)
    for n, latency in enumerate((5.0, 1.0, 9.0)):
        table.add(tap_event(n, "web", dst="api", path="/items?page=1", latency_ms=latency))
    table.add(tap_event(9, "web", dst="api", path="/items", status=502, latency_ms=2.0))
    [row] = table.ranked("count", NOW.timestamp())
    assert (row.source, row.destination, row.method, row.path) == ("web", "api", "GET", "/items")
    assert (row.count, row.best_ms, row.worst_ms, row.last_ms) == (4, 1.0, 9.0, 2.0)
    assert row.success_rate == 0.75


def test_ranking_by_rps_latency_and_success() -> None:
    table = TopTable(AN_HOUR_AGO)
    now = NOW.timestamp()
    for n in range(20):
        table.add(tap_event(n, "web", dst="api", path="/busy", ts=now - 1))
    table.add(tap_event(30, "web", dst="api", path="/slow", latency_ms=900.0, ts=now - 1))
    table.add(tap_event(31, "web", dst="api", path="/failing", status=500, ts=now - 1))
    assert table.ranked("rps", now)[0].path == "/busy"
    assert table.ranked("rps", now)[0].rps(now) == 2.0  # 20 requests in a 10 s window
    assert table.ranked("latency", now)[0].path == "/slow"
    assert table.ranked("success", now)[0].path == "/failing"


def test_a_table_younger_than_the_window_rates_over_the_time_it_watched() -> None:
    now = NOW.timestamp()
    table = TopTable(watched_since=now - 4)
    for second in range(4):
        for n in range(5):
            table.add(tap_event(10 * second + n, "web", dst="api", ts=now - 4 + second + 0.5))
    [row] = table.ranked("rps", now)
    assert row.count == 20 and row.rps(now) == 5.0  # not 20 requests / 10 s


def test_a_request_seen_by_both_proxies_counts_once() -> None:
    table = TopTable(AN_HOUR_AGO)
    table.add(tap_event(1, "web", dst="api"))  # outbound at the client's proxy
    table.add(tap_event(1, "api", dst="api", proxy_dir="inbound", src="web"))
    table.add(tap_event(2, "api", dst="api", proxy_dir="inbound", src="batch"))  # untapped client
    rows = table.ranked("count", NOW.timestamp())
    assert sorted((r.source, r.count) for r in rows) == [("batch", 1), ("web", 1)]


def test_a_request_between_instances_of_tapped_services_counts_once() -> None:
    table = TopTable(AN_HOUR_AGO)
    table.add(tap_event(1, "web-1", dst="api", src="web"))  # outbound, with its own identity
    table.add(tap_event(1, "api-2", dst="api", proxy_dir="inbound", src="web"))
    [row] = table.ranked("count", NOW.timestamp())
    assert (row.source, row.count) == ("web", 1)


def test_row_count_is_bounded_by_evicting_the_least_recent() -> None:
    table = TopTable(AN_HOUR_AGO, max_rows=10)
    for n in range(50):
        table.add(tap_event(n, path=f"/p{n}"))
    assert len(table) == 10
    assert {r.path for r in table.ranked("count", NOW.timestamp())} == {
        f"/p{n}" for n in range(40, 50)}


def test_requests_of_a_client_without_identity_merge_across_its_connections() -> None:
    table = TopTable(AN_HOUR_AGO)
    for n in range(3):
        table.add(tap_event(n, "api", dst="api", proxy_dir="inbound",
                            src_addr=f"10.0.0.5:{4000 + n}"))
    [row] = table.ranked("count", NOW.timestamp())
    assert (row.source, row.count) == ("10.0.0.5", 3)


def test_requests_ending_out_of_order_count_in_the_rate() -> None:
    now = NOW.timestamp()
    table = TopTable(AN_HOUR_AGO)
    for n in range(100):  # started in alternating seconds, as requests of varied latency end
        table.add(tap_event(n, "web", dst="api", ts=now - 5 + (n % 2) + 0.5))
    [row] = table.ranked("rps", now)
    assert row.rps(now) == 10.0  # 100 requests in a 10 s window
