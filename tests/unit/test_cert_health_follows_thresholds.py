"""Certificate health: leaf thresholds by fraction of lifetime, CA thresholds by time left."""

from datetime import timedelta

import pytest

from console.api import ProxyCerts
from console.models.certs import (
    Health,
    cert_rows,
    format_span,
    health,
    time_left,
    timeline_bar,
)
from tests.console.scenes import NOW, cert_json, certs_json


def leaf(left: timedelta, lifetime: timedelta = timedelta(hours=24)):
    after = NOW + left
    return ProxyCerts.from_json("api", {"chain": [
        cert_json("leaf", "api", after - lifetime, after, "1")]}).certs[0]


@pytest.mark.parametrize(("left", "expected"), [
    (timedelta(hours=20), Health.OK),
    (timedelta(hours=7, minutes=30), Health.OK),  # 31 % left: before the renewal point
    (timedelta(hours=7), Health.WARNING),  # 29 %: should have renewed at 70 %
    (timedelta(hours=2), Health.CRITICAL),  # under 10 %
    (timedelta(seconds=-1), Health.EXPIRED),
])
def test_leaf_health_by_fraction_of_lifetime(left: timedelta, expected: Health) -> None:
    assert health(leaf(left), NOW) is expected


def test_expired_and_not_yet_valid_are_red() -> None:
    assert Health.EXPIRED.style == "red" and Health.EXPIRED.failing
    future = leaf(timedelta(hours=48))
    assert health(future, NOW) is Health.NOT_YET_VALID


def test_issuer_warns_a_month_ahead_and_is_critical_a_week_ahead() -> None:
    def issuer(days_left: float):
        after = NOW + timedelta(days=days_left)
        return ProxyCerts.from_json("api", {"chain": [
            cert_json("leaf", "api", NOW - timedelta(hours=1), NOW + timedelta(hours=23), "1"),
            cert_json("issuer", "iss", after - timedelta(days=365), after, "2")]}).certs[1]

    assert health(issuer(60), NOW) is Health.OK
    assert health(issuer(20), NOW) is Health.WARNING
    assert health(issuer(3), NOW) is Health.CRITICAL


def test_time_left_and_timeline_bar() -> None:
    assert time_left(leaf(timedelta(hours=5, minutes=3)), NOW) == "5h3m"
    assert time_left(leaf(-timedelta(hours=2)), NOW) == "expired 2h0m ago"
    assert timeline_bar(leaf(timedelta(hours=12)), NOW, 10) == "#####--|--"
    assert timeline_bar(leaf(-timedelta(hours=1)), NOW, 10) == "#######|##"


@pytest.mark.parametrize(("days", "shown"), [
    (365, "1y0mo"), (3649, "9y11mo"), (3650, "10y0mo"), (364, "364d0h")])
def test_long_spans_count_years_and_months(days: int, shown: str) -> None:
    assert format_span(timedelta(days=days)) == shown


def test_rows_share_ca_certificates_and_list_leaves_by_expiry() -> None:
    reports = {
        "api": ProxyCerts.from_json("api", certs_json("api", timedelta(hours=20), "a1")),
        "web": ProxyCerts.from_json("web", certs_json("web", timedelta(hours=3), "w1")),
    }
    rows = cert_rows(reports, NOW)
    assert [(r.cert.kind, r.owners) for r in rows] == [
        ("anchor", ("api", "web")), ("issuer", ("api", "web")),
        ("leaf", ("web",)), ("leaf", ("api",))]
    assert rows[2].next_renewal == reports["web"].next_renewal
