"""A policy reload gives existing endpoints the new breaker settings without resetting them."""

import random

from proxy.breaker import BreakerSettings
from proxy.context import _breaker_settings
from proxy.endpoints import ServiceEndpoints
from proxy.traffic import TrafficPolicy
from tests.unit.policy_helpers import policy
from vm_mesh.discovery.base import EndpointSet, Instance


def test_reloaded_settings_reach_live_breakers() -> None:
    endpoints = ServiceEndpoints("api", BreakerSettings(), random.Random(1))
    instance = Instance(service="api", instance_id="api-1", address="127.0.0.1", port=1)
    endpoints.update(EndpointSet("api", (instance,), "static", updated_at=0.0))
    breaker = endpoints.endpoints["api-1"].breaker
    breaker.on_failure()
    text = "kind: ServicePolicy\nservice: api\ncircuit_breaker: {consecutive_failures: 2}\n"
    settings = TrafficPolicy(policy(text), "vmesh.local").service("api").circuit_breaker
    endpoints.set_breaker(_breaker_settings(settings))
    assert endpoints.endpoints["api-1"].breaker is breaker and breaker.failures == 1
    breaker.on_failure()
    assert breaker.state == "open"  # the second failure ejects under the new threshold
