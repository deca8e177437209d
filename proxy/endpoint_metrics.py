"""What the balancer can send to, as Prometheus gauges read at each scrape (nothing per request).

- `outbound_balancer_endpoints{dst_service, endpoint_state}` (Linkerd's name): the instances
  of each service this proxy sends to, `ready` (its circuit breaker closed) or `ejected` (open,
  or half-open: only a probe goes), both served, 0 included, for every service it knows;
- `outbound_failover_active{dst_service, failover_to}`: 1 for each service whose requests go to
  a failover destination (`failover_to`; `none` while no destination has an instance either).
"""

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from proxy.endpoints import ServiceEndpoints

NO_DESTINATION = "none"


class EndpointStates(Collector):
    """The balancer's endpoints and failovers of the services `services` returns."""

    def __init__(self, registry: CollectorRegistry,
                 services: Callable[[], Iterable[ServiceEndpoints]]) -> None:
        self._services = services
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        endpoints = GaugeMetricFamily(
            "outbound_balancer_endpoints",
            "Instances of each destination service, ready or ejected by their circuit breaker.",
            labels=["dst_service", "endpoint_state"],
        )
        failovers = GaugeMetricFamily(
            "outbound_failover_active",
            "1 while a service's requests go to a failover destination (none: no destination "
            "has an instance either).",
            labels=["dst_service", "failover_to"],
        )
        for service in list(self._services()):
            ready = sum(e.breaker.state == "closed" for e in service.endpoints.values())
            endpoints.add_metric([service.service, "ready"], ready)
            endpoints.add_metric([service.service, "ejected"], len(service.endpoints) - ready)
            if service.failover is not None:
                failovers.add_metric([service.service, service.failover.to or NO_DESTINATION], 1)
        yield endpoints
        yield failovers
