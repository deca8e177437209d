"""The consumers of a proxy's request events, wired to its bus in one place."""

from dataclasses import dataclass

from proxy.accesslog import log_request
from proxy.events import EventBus
from proxy.listener_limits import ListenerLimits
from proxy.logbuffer import LogBuffer
from proxy.metrics import ProxyMetrics
from proxy.policy_metrics import PolicyMetrics
from proxy.stats import WindowedStats
from proxy.tap import TapHub


@dataclass(frozen=True, slots=True)
class Observability:
    """Metrics, golden stats, tap, the log ring buffer and the listeners' connection limits
of one proxy."""

    bus: EventBus
    metrics: ProxyMetrics
    stats: WindowedStats
    tap: TapHub
    logs: LogBuffer
    policy: PolicyMetrics
    listeners: ListenerLimits

    @classmethod
    def attach(cls, bus: EventBus, *, access_log: bool = False) -> "Observability":
        """Subscribe metrics and stats (and the access log if enabled) to `bus`."""
        metrics = ProxyMetrics()
        observability = cls(
            bus, metrics, WindowedStats(), TapHub(bus), LogBuffer(),
            PolicyMetrics(metrics.registry), ListenerLimits(metrics.registry),
        )
        bus.subscribe(observability.metrics.observe)
        bus.subscribe(observability.policy.observe)
        bus.subscribe(observability.stats.record)
        if access_log:
            bus.subscribe(log_request)
        return observability
