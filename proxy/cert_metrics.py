"""The proxy's leaf certificate validity as Prometheus gauges, read at each scrape.

Linkerd's proxy exports the same expiry series (`identity_cert_expiration_timestamp_seconds`),
so an alert written for it works here: a leaf that renewal failed to replace shows
up as a shrinking `... - time()` long before its handshakes start to fail. Its start,
`identity_cert_not_before_timestamp_seconds`, gives the leaf's lifetime (the identity
service's `--leaf-ttl`), so that an alert can say renewal is late whatever the lifetime.
"""

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from proxy.tls import TlsMaterial


class CertExpiry(Collector):
    """When the current leaf expires and since when it is valid (Unix time), as
    `identity_cert_expiration_timestamp_seconds` and
    `identity_cert_not_before_timestamp_seconds`; absent while no certificate is loaded."""

    def __init__(self, registry: CollectorRegistry, tls: TlsMaterial) -> None:
        self._tls = tls
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        expiry = GaugeMetricFamily(
            "identity_cert_expiration_timestamp_seconds",
            "When this proxy's leaf certificate expires, in seconds since the epoch.",
        )
        start = GaugeMetricFamily(
            "identity_cert_not_before_timestamp_seconds",
            "Since when this proxy's leaf certificate is valid, in seconds since the epoch.",
        )
        if self._tls.loaded:
            not_before, not_after = self._tls.validity
            start.add_metric([], not_before)
            expiry.add_metric([], not_after)
        yield expiry
        yield start
