"""Policy metrics: authz decisions by rule, retries, per-backend requests of a split, shadows."""

from prometheus_client import CollectorRegistry, generate_latest

from proxy.events import EventBus, RequestEvent
from proxy.observability import Observability


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return value or 0.0


def test_events_feed_policy_metrics() -> None:
    bus = EventBus()
    observability = Observability.attach(bus)
    registry, metrics = observability.metrics.registry, observability.policy
    bus.publish(RequestEvent(0, "1", "inbound", "127.0.0.1:1", dst_service="store",
                             policy_decision="audit", policy_rule="store.default",
                             authz_reason="authz.default_deny"))
    for backend, status, retries in [("api-v1", 200, 0), ("api-v2", 503, 2), ("api-v2", 200, 1)]:
        bus.publish(RequestEvent(0, "2", "outbound", "127.0.0.1:2", dst_service=backend,
                                 method="GET", route="canary", status=status, retries=retries,
                                 latency_ms=12.0, service="api"))
    bus.publish(RequestEvent(0, "3", "outbound", "127.0.0.1:2", dst_service="x"))  # no policy
    metrics.mirror_outcome("api", "api-shadow", "failed")
    assert sample(registry, "authz_decision_total", dst_service="store", decision="audit",
                  rule="store.default", reason="authz.default_deny") == 1
    assert sample(registry, "route_retry_total", dst_service="api", route="canary") == 3
    assert sample(registry, "route_backend_request_total", dst_service="api", route="canary",
                  backend="api-v2", status_code="503") == 1
    assert sample(registry, "route_backend_response_latency_ms_count", dst_service="api",
                  route="canary", backend="api-v1") == 1
    assert sample(registry, "mirror_request_total", dst_service="api", shadow="api-shadow",
                  outcome="failed") == 1


def test_policy_series_are_served_with_the_proxy_metrics() -> None:
    bus = EventBus()
    observability = Observability.attach(bus)
    bus.publish(RequestEvent(0, "1", "inbound", "127.0.0.1:1", dst_service="store",
                             policy_decision="deny", policy_rule="store.default",
                             authz_reason="authz.default_deny"))
    text = generate_latest(observability.metrics.registry).decode()
    assert ('authz_decision_total{decision="deny",dst_service="store",'
            'reason="authz.default_deny",rule="store.default"} 1.0') in text
