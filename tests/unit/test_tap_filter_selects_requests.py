"""The tap view's `/` filter: service, path prefix, method, status and minimum latency."""

import pytest

from console.models.tap import TapFilter
from tests.console.scenes import tap_event


def test_terms_combine_and_all_must_match() -> None:
    f = TapFilter.parse("svc=api path=/items method=get status=5xx lat>=100")
    slow_failure = tap_event(1, dst="api", path="/items/7", status=503, latency_ms=150)
    assert f.matches(slow_failure)
    assert not f.matches(tap_event(2, dst="api", path="/items/7", status=503, latency_ms=50))
    assert not f.matches(tap_event(3, dst="api", path="/other", status=503, latency_ms=150))
    assert not f.matches(tap_event(4, dst="store", path="/items", status=503, latency_ms=150))
    assert not f.matches(tap_event(5, dst="api", path="/items", status=200, latency_ms=150))
    assert not f.matches(tap_event(6, dst="api", path="/items", status=503, latency_ms=150,
                                   method="POST"))


@pytest.mark.parametrize(("spec", "status", "expected"), [
    ("404", 404, True), ("404", 403, False), ("4xx", 418, True), ("4xx", 500, False),
    (">=400", 400, True), (">=400", 399, False), ("5xx", None, False),
])
def test_status_accepts_exact_class_and_lower_bound(spec: str, status: int | None,
                                                    expected: bool) -> None:
    term = f"status{spec}" if spec.startswith(">=") else f"status={spec}"
    assert TapFilter.parse(term).matches(tap_event(1, status=status)) is expected


def test_service_matches_proxy_destination_or_source() -> None:
    f = TapFilter.parse("svc=web")
    assert f.matches(tap_event(1, "web", dst="api"))  # seen at web's proxy
    assert f.matches(tap_event(2, "api", dst="web"))  # going to web
    assert f.matches(tap_event(3, "api", dst="api", proxy_dir="inbound", src="web"))
    assert not f.matches(tap_event(4, "api", dst="store"))


def test_bare_word_searches_path_and_service() -> None:
    assert TapFilter.parse("items").matches(tap_event(1, path="/items/3"))
    assert not TapFilter.parse("orders").matches(tap_event(1, path="/items/3"))


@pytest.mark.parametrize(("text", "message"), [
    ("colour=red", "unknown filter key 'colour'"),
    ("status=abc", "bad status 'abc'"),
    ("lat=fast", "bad latency 'fast'"),
])
def test_bad_terms_are_rejected_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TapFilter.parse(text)


def test_filter_round_trips_through_its_text() -> None:
    text = "svc=api path=/x method=GET status>=500 lat>=250"
    assert TapFilter.parse(str(TapFilter.parse(text))) == TapFilter.parse(text)
    assert str(TapFilter()) == ""


def test_server_side_part_carries_only_what_the_admin_api_filters() -> None:
    params = TapFilter.parse("svc=api path=/items method=get status=5xx lat>=5").server_params()
    assert params == {"path": "/items", "method": "GET", "status": "5xx", "min_latency_ms": "5"}
    assert "status" not in TapFilter.parse("status>=400").server_params()
