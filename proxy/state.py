"""What a running proxy tells its admin API about itself."""

from typing import TYPE_CHECKING, Any

from proxy.context import ProxyContext
from vm_mesh.config import DiscoveryChoice
from vm_mesh.discovery.base import Instance
from vm_mesh.schema import dump

if TYPE_CHECKING:
    from identity.renewer import Renewer


class RunningProxyState:
    """The admin API's view of one proxy (`proxy.admin.ProxyState`)."""

    def __init__(
        self, context: ProxyContext, source_file: str, discovery: DiscoveryChoice | None = None
    ) -> None:
        self.ctx = context
        self.service = context.config.service
        self.source_file = source_file
        self.discovery = discovery
        self.listening = False
        self.draining = False
        self.left_discovery = False
        self.instance: Instance | None = None  # what the proxy registers, once it listens
        # until the first read of policy from Consul KV answers: where it is read from
        self.policy_unread: str | None = None
        self._synced = False
        self.renewer: Renewer | None = None  # None: the proxy does not renew its leaf

    def ready(self) -> tuple[bool, str]:
        """Ready: certificates loaded, listeners up, discovery synced once (`discovery_waits`),
        and neither draining nor out of discovery."""
        if self.draining:
            return False, "draining"
        if self.left_discovery:
            return False, "left discovery (an upgrade hands this proxy's listeners over)"
        if not self.ctx.tls.loaded:
            return False, f"no certificates ({self.ctx.tls.last_error})"
        if not self.listening:
            return False, "listeners not up"
        waiting = self.discovery_waits()
        if waiting is not None:
            return False, f"discovery: {waiting}"
        return True, "ok"

    def discovery_waits(self) -> str | None:
        """What discovery still waits for before it has synced once: the backend taking this
        proxy's registration (announced over mDNS, accepted by the Consul agent, the static
        file read) and, with policy from Consul KV, the first read of it answering. None
        once synced, for good: a backend that fails later leaves the proxy ready, routing on
        its last known good endpoints."""
        if self._synced:
            return None
        if self.instance is None:
            return "registration not begun"
        waiting = self.ctx.discovery.waiting_for(self.instance)
        if waiting is None and self.policy_unread is not None:
            waiting = f"reading policy from {self.policy_unread}"
        self._synced = waiting is None
        return waiting

    def in_flight(self) -> int:
        return self.ctx.in_flight

    def in_flight_inbound(self) -> int:
        return self.ctx.inbound_in_flight

    def open_connections(self) -> int:
        return self.ctx.open_clients

    def endpoints(self) -> dict[str, Any]:
        return self.ctx.describe_endpoints()

    def certs(self) -> dict[str, Any]:
        """The chain and bundle, with the time the renewal is scheduled for (the renewer's,
        jitter included) and the attempts to renew that failed since the proxy started; both
        None when nothing renews the leaf (no `identity_url`)."""
        renewer = self.renewer
        return {**self.ctx.tls.describe(),
                "next_renewal": renewer.next_renewal if renewer is not None else None,
                "renewal_failures": renewer.failures if renewer is not None else None}

    def config(self) -> dict[str, Any]:
        return {
            "service": {
                "file": self.source_file,
                **_redacted(dump(self.ctx.config, exclude_none=False)),
            },
            "discovery": self._discovery(),
            "policy": self.ctx.policy.describe(),
        }

    def _discovery(self) -> dict[str, Any] | None:
        if self.discovery is None:
            return None
        source = str(self.discovery.file) if self.discovery.file else "defaults"
        return {"file": source, **_redacted(dump(self.discovery.settings, exclude_none=False))}


def _redacted(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` with the Consul ACL token (wherever it sits) replaced by a marker."""
    out = dict(settings)
    if out.get("consul_token"):
        out["consul_token"] = "<redacted>"
    if isinstance(out.get("discovery"), dict):
        out["discovery"] = _redacted(out["discovery"])
    return out
