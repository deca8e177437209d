"""The proxy's leaf certificate expiry as a Prometheus gauge, read at each scrape.

Linkerd's proxy exports the same series (`identity_cert_expiration_timestamp_seconds`),
so an alert written for it works here: a leaf that renewal failed to replace shows
up as a shrinking `... - time()` long before its handshakes start to fail.
"""

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from proxy.tls import TlsMaterial


class CertExpiry(Collector):
    """`identity_cert_expiration_timestamp_seconds`: when the current leaf expires (Unix
    time); absent while no certificate is loaded."""

    def __init__(self, registry: CollectorRegistry, tls: TlsMaterial) -> None:
        self._tls = tls
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "identity_cert_expiration_timestamp_seconds",
            "When this proxy's leaf certificate expires, in seconds since the epoch.",
        )
        if self._tls.loaded:
            family.add_metric([], self._tls.validity[1])
        yield family
