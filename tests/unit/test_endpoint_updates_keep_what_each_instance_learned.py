"""A new endpoint set keeps the circuit breaker and latency of each instance still at the same
address, whatever else its announcement changed (weight, version, zone), and starts afresh for an
instance that moved or is new."""

import random
from dataclasses import replace

from proxy.breaker import BreakerSettings
from proxy.endpoints import ServiceEndpoints
from vm_mesh.discovery.base import EndpointSet, Instance

FIRST = Instance("api", "api-1", "127.0.0.1", 4143, admin_port=4191, zone="a", version="1.0")


def failing_endpoints() -> ServiceEndpoints:
    """The endpoints of `api` with api-1 ejected by its breaker and 80 ms of latency learned."""
    endpoints = ServiceEndpoints("api", BreakerSettings(consecutive_failures=1), random.Random(1))
    endpoints.update(EndpointSet("api", (FIRST,), "consul", updated_at=1.0))
    endpoint = endpoints.endpoints["api-1"]
    endpoint.breaker.on_failure()
    endpoint.ewma.observe(80.0)
    assert endpoint.breaker.state == "open"
    return endpoints


def test_a_changed_weight_or_version_keeps_the_breaker_and_latency() -> None:
    endpoints = failing_endpoints()
    before = endpoints.endpoints["api-1"]
    drained = replace(FIRST, weight=0, version="1.1", zone="b")
    endpoints.update(EndpointSet("api", (drained,), "consul", updated_at=2.0))
    after = endpoints.endpoints["api-1"]
    assert after.breaker.state == "open" and after.ewma.value == before.ewma.value
    assert (after.instance, after.weight) == (drained, 0)  # the balancer reads the new weight
    assert endpoints.describe()["instances"][0]["weight"] == 0


def test_an_instance_at_a_new_address_starts_afresh() -> None:
    endpoints = failing_endpoints()
    moved = replace(FIRST, address="127.0.0.2")
    endpoints.update(EndpointSet("api", (moved,), "consul", updated_at=2.0))
    after = endpoints.endpoints["api-1"]
    assert after.breaker.state == "closed" and after.pool_key == "api@127.0.0.2:4143"
