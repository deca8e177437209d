"""What a running proxy tells its admin API about itself."""

from typing import Any

from proxy.context import ProxyContext


class RunningProxyState:
    """The admin API's view of one proxy (`proxy.admin.ProxyState`)."""

    def __init__(self, context: ProxyContext, source_file: str) -> None:
        self.ctx = context
        self.service = context.config.service
        self.source_file = source_file
        self.listening = False
        self.draining = False

    def ready(self) -> tuple[bool, str]:
        if self.draining:
            return False, "draining"
        if not self.ctx.tls.loaded:
            return False, f"no certificates ({self.ctx.tls.last_error})"
        if not self.listening:
            return False, "listeners not up"
        return True, "ok"

    def in_flight(self) -> int:
        return self.ctx.in_flight

    def endpoints(self) -> dict[str, Any]:
        return self.ctx.describe_endpoints()

    def certs(self) -> dict[str, Any]:
        return self.ctx.tls.describe()

    def config(self) -> dict[str, Any]:
        return {
            "service": {"file": self.source_file, **self.ctx.config.model_dump(mode="json")},
            "policy": self.ctx.policy.describe(),
        }
