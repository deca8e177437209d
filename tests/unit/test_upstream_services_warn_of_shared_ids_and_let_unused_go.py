"""What a proxy keeps per upstream service: two instances that announce the same id (a service
file copied to a second VM) are named in a warning instead of one of them being routed to
silently, and a service no request asks for any more is let go."""

import logging
import random

import pytest

from proxy.breaker import BreakerSettings
from proxy.endpoints import UNUSED_SWEEPS, ServiceEndpoints
from vm_mesh.discovery.base import EndpointSet, Instance


def test_a_shared_instance_id_is_logged_with_both_addresses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoints = ServiceEndpoints("api", BreakerSettings(), random.Random(1))
    first = Instance("api", "api-1", "198.18.0.2", 4143)
    copy = Instance("api", "api-1", "198.18.0.3", 4143)
    other = Instance("api", "api-2", "198.18.0.4", 4143)
    with caplog.at_level(logging.WARNING, logger="vmesh.proxy"):
        endpoints.update(EndpointSet("api", (first, other), source="static", updated_at=0.0))
        assert not caplog.records
        endpoints.update(EndpointSet("api", (first, copy, other), source="static", updated_at=0.0))
    [record] = caplog.records
    assert record.reason == "discovery.duplicate_instance_id"  # type: ignore[attr-defined]
    assert record.addrs == ["198.18.0.2:4143", "198.18.0.3:4143"]  # type: ignore[attr-defined]


def test_a_service_no_request_asks_for_is_let_go_after_some_sweeps() -> None:
    endpoints = ServiceEndpoints("typo", BreakerSettings(), random.Random(1))
    # the first sweep sees the request that made it; then UNUSED_SWEEPS sweeps see none
    verdicts = [endpoints.unused_for_long() for _ in range(UNUSED_SWEEPS + 1)]
    assert verdicts == [False] * UNUSED_SWEEPS + [True]
    endpoints.used = True  # a request asks for it again: the count starts over
    assert [endpoints.unused_for_long() for _ in range(UNUSED_SWEEPS + 1)][-2:] == [False, True]
