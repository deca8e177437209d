"""Count each request once when both the client's and the server's proxy report it."""

from console.api import TapEvent


class SeenOnce:
    """Keeps outbound events; drops an inbound one when its client's service is also tapped.

    A request between two tapped proxies appears twice (outbound at the client,
    inbound at the server). The outbound side is the one kept: it knows the
    endpoint picked and the retries. Clients are told apart by service, since an
    inbound event names its client by identity (`svc/web`), not by instance
    (`web-1`), so an instance the console cannot tap, of a service whose other
    instances it taps, is not counted. Inbound events from clients of services
    the console does not tap (another mesh, a plain client) are the only record
    and count.
    """

    def __init__(self) -> None:
        self._tapped_clients: set[str] = set()

    def counts(self, event: TapEvent) -> bool:
        if event.direction == "outbound":
            self._tapped_clients.add(event.client_name)
            return True
        return event.client_name not in self._tapped_clients
