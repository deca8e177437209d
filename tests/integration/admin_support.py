"""What a proxy tells its admin API, fixed, for tests that run the admin server alone."""


class FixedProxyFacts:
    """A ready proxy of service `api` with nothing in flight, no upstreams and no chain."""

    service = "api"

    def ready(self) -> tuple[bool, str]:
        return True, "listeners up"

    def in_flight(self) -> int:
        return 0

    def in_flight_inbound(self) -> int:
        return 0

    def open_connections(self) -> int:
        return 0

    def endpoints(self) -> dict:
        return {"upstreams": []}

    def certs(self) -> dict:
        return {"chain": []}

    def config(self) -> dict:
        return {"service": "api"}
