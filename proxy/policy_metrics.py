"""Metrics of the policy layers, fed by the request event like every other metric.

- `authz_decision_total{dst_service, decision, rule, reason}`: every inbound
  authorization decision and the rule that took it (audit decisions included);
- `route_retry_total{dst_service, route}`: retries sent;
- `route_backend_request_total{dst_service, route, backend, status_code}` and
  `route_backend_response_latency_ms{dst_service, route, backend}`: per backend of
  a split, so a canary can be judged against the stable version;
- `mirror_request_total{dst_service, shadow, outcome}`: shadow copies by outcome.

Outbound events name the logical service in `extra["service"]` and the chosen
backend in `dst_service`; shadow copies are counted by the ShadowDispatcher.
"""

from prometheus_client import CollectorRegistry, Counter, Histogram

from proxy.events import RequestEvent
from proxy.metrics import Children

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
LOGICAL_SERVICE = "service"


class PolicyMetrics:
    """Prometheus series of authorization, retries, splits and mirrors."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.authz = Counter(
            "authz_decision_total",
            "Inbound authorization decisions by the rule that decided.",
            ["dst_service", "decision", "rule", "reason"],
            registry=registry,
        )
        self.retries = Counter(
            "route_retry_total",
            "Retries sent, by destination service and route.",
            ["dst_service", "route"],
            registry=registry,
        )
        self.backend_requests = Counter(
            "route_backend_request_total",
            "Requests per backend of a route (traffic split), by response status.",
            ["dst_service", "route", "backend", "status_code"],
            registry=registry,
        )
        self.backend_latency = Histogram(
            "route_backend_response_latency_ms",
            "Response latency per backend of a route, in milliseconds.",
            ["dst_service", "route", "backend"],
            buckets=LATENCY_BUCKETS_MS,
            registry=registry,
        )
        self._backend_requests = Children(self.backend_requests)
        self._backend_latency = Children(self.backend_latency)
        self.mirrors = Counter(
            "mirror_request_total",
            "Shadow copies by outcome (sent, failed, timeout, dropped).",
            ["dst_service", "shadow", "outcome"],
            registry=registry,
        )

    def observe(self, event: RequestEvent) -> None:
        """EventBus subscriber."""
        if event.direction == "inbound":
            if event.policy_decision is not None:
                self.authz.labels(
                    event.dst_service or "",
                    event.policy_decision,
                    event.policy_rule or "",
                    event.extra.get("authz_reason", ""),
                ).inc()
            return
        service = event.extra.get(LOGICAL_SERVICE)
        if service is None:
            return
        if event.retries:
            self.retries.labels(service, event.route).inc(event.retries)
        backend = event.dst_service or ""
        status = str(event.status) if event.status is not None else ""
        self._backend_requests(service, event.route, backend, status).inc()
        self._backend_latency(service, event.route, backend).observe(event.latency_ms)

    def mirror_outcome(self, service: str, shadow: str, outcome: str) -> None:
        self.mirrors.labels(service, shadow, outcome).inc()
