"""Priority failover (ServicePolicy `failover`): the requests for a service go to its own
instances while one is available, else to the first of its failover destinations, in order,
that has one; back to its own as soon as one of them is available again.

Pure: `choose` is a function of the destinations' availability, and a `Failover` says where
a service's requests go instead of to its own instances, so that the proxy logs each change
once, not each request (`ServiceEndpoints.fail_over`). The proxy gathers the destinations
from discovery (`ProxyContext.fail_over`) for HTTP requests and opaque TCP connections alike.
"""

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar


class Destination(Protocol):
    """What the choice needs of a destination: whether it has an available instance."""

    def available(self) -> bool: ...


D = TypeVar("D", bound=Destination)


def choose(destinations: Sequence[D]) -> D | None:
    """The first of `destinations` with an available instance; None when none has one."""
    for destination in destinations:
        if destination.available():
            return destination
    return None


class Failover:
    """The requests for a service with no available instance of its own go to `to`, a
    failover destination (None: no destination has an instance either), since `since`
    (Unix time); `reason` and `detail` say why its own instances cannot take them."""

    __slots__ = ("detail", "reason", "since", "to")

    def __init__(self, to: str | None, reason: str, detail: str, since: float) -> None:
        self.to = to
        self.reason = reason
        self.detail = detail
        self.since = since

    def describe(self) -> dict[str, Any]:
        """As `/v1/endpoints` shows it, under the service that fails over."""
        return {"to": self.to, "reason": self.reason, "detail": self.detail,
                "since": self.since}

    def __repr__(self) -> str:
        return f"<Failover to={self.to} reason={self.reason}>"
