"""Metrics of the policy layers, fed by the request event like every other metric.

- `authz_decision_total{dst_service, decision, rule, reason}`: every inbound
  authorization decision and the rule that took it (audit decisions included);
- `route_retry_total{dst_service, route}`: retries sent;
- `route_backend_request_total{dst_service, route, backend, status_code}` and
  `route_backend_response_latency_ms{dst_service, route, backend}`: per backend of
  a split, so a canary can be judged against the stable version;
- `mirror_request_total{dst_service, shadow, outcome}`: shadow copies by outcome.

Outbound events name the logical service in `service` and the chosen
backend in `dst_service`; shadow copies are counted by the ShadowDispatcher.
"""

from prometheus_client import CollectorRegistry

from proxy.events import RequestEvent
from proxy.series import Tables

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


class PolicyMetrics:
    """Prometheus series of authorization, retries, splits and mirrors."""

    def __init__(self, registry: CollectorRegistry) -> None:
        tables = Tables(registry)
        self.authz = tables.counter(
            "authz_decision_total",
            "Inbound authorization decisions by the rule that decided.",
            ["dst_service", "decision", "rule", "reason"],
        )
        self.retries = tables.counter(
            "route_retry_total",
            "Retries sent, by destination service and route.",
            ["dst_service", "route"],
        )
        self.backend_requests = tables.counter(
            "route_backend_request_total",
            "Requests per backend of a route (traffic split), by response status.",
            ["dst_service", "route", "backend", "status_code"],
        )
        self.backend_latency = tables.histogram(
            "route_backend_response_latency_ms",
            "Response latency per backend of a route, in milliseconds.",
            ["dst_service", "route", "backend"],
            LATENCY_BUCKETS_MS,
        )
        self.mirrors = tables.counter(
            "mirror_request_total",
            "Shadow copies by outcome (sent, failed, timeout, dropped).",
            ["dst_service", "shadow", "outcome"],
        )

    def observe(self, event: RequestEvent) -> None:
        """EventBus subscriber."""
        if event.direction == "inbound":
            if event.policy_decision is not None:
                self.authz.inc(
                    (
                        event.dst_service or "",
                        event.policy_decision,
                        event.policy_rule or "",
                        event.authz_reason or "",
                    )
                )
            return
        service = event.service
        if service is None:
            return
        route = event.route
        if event.retries:
            self.retries.inc((service, route), event.retries)
        backend = event.dst_service or ""
        status = str(event.status) if event.status is not None else ""
        self.backend_requests.inc((service, route, backend, status))
        self.backend_latency.observe((service, route, backend), event.latency_ms)

    def mirror_outcome(self, service: str, shadow: str, outcome: str) -> None:
        self.mirrors.inc((service, shadow, outcome))
