"""One structured access-log line per request, when the service config enables it."""

import logging

from proxy.events import RequestEvent

log = logging.getLogger("vmesh.access")


def log_request(event: RequestEvent) -> None:
    """EventBus subscriber: the tap fields of the request as one JSON log line."""
    log.info("request", extra={"request": event.to_tap()})
