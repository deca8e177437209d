"""Metrics of the policy layers, fed by the request event like every other metric.

- `authz_decision_total{dst_service, decision, rule, reason}`: every inbound
  authorization decision and the rule that took it (audit decisions included);
- `route_retry_total{dst_service, route}`: retries sent;
- `mirror_request_total{dst_service, shadow, outcome}`: shadow copies by outcome.

The per-backend families of a split (`route_backend_request_total`,
`route_backend_response_latency_ms`, so a canary can be judged against the
stable version) come from the request rollup of `proxy.metrics`. Shadow copies
are counted by the ShadowDispatcher.
"""

from prometheus_client import CollectorRegistry

from proxy.events import RequestEvent
from proxy.series import Tables


class PolicyMetrics:
    """Prometheus series of authorization decisions, retries and mirrors."""

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
        if event.retries and event.service is not None:
            self.retries.inc((event.service, event.route), event.retries)

    def mirror_outcome(self, service: str, shadow: str, outcome: str) -> None:
        self.mirrors.inc((service, shadow, outcome))
