"""What a running proxy tells its admin API about itself."""

from typing import Any

from proxy.context import ProxyContext
from vm_mesh.config import DiscoveryChoice
from vm_mesh.schema import dump


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

    def ready(self) -> tuple[bool, str]:
        if self.draining:
            return False, "draining"
        if self.left_discovery:
            return False, "left discovery (an upgrade hands this proxy's listeners over)"
        if not self.ctx.tls.loaded:
            return False, f"no certificates ({self.ctx.tls.last_error})"
        if not self.listening:
            return False, "listeners not up"
        return True, "ok"

    def in_flight(self) -> int:
        return self.ctx.in_flight

    def in_flight_inbound(self) -> int:
        return self.ctx.inbound_in_flight

    def open_connections(self) -> int:
        return self.ctx.open_clients

    def endpoints(self) -> dict[str, Any]:
        return self.ctx.describe_endpoints()

    def certs(self) -> dict[str, Any]:
        return self.ctx.tls.describe()

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
