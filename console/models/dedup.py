"""Count each request once when both the client's and the server's proxy report it."""

from console.api import TapEvent


class SeenOnce:
    """Keeps outbound events; drops an inbound one when its client's proxy is also tapped.

    A request between two tapped proxies appears twice (outbound at the client,
    inbound at the server). The outbound side is the one kept: it knows the
    endpoint picked and the retries. Inbound events from clients the console
    does not tap (another host, a plain client) are the only record and count.
    """

    def __init__(self) -> None:
        self._tapped_clients: set[str] = set()

    def counts(self, event: TapEvent) -> bool:
        if event.direction == "outbound":
            self._tapped_clients.add(event.proxy)
            return True
        return event.source_name not in self._tapped_clients
