"""`edges`: who talks to whom, with identities and whether every request was mTLS."""

from console.models.edges import EdgeTable
from tests.console.scenes import tap_event


def test_edges_carry_identities_and_secured_state() -> None:
    edges = EdgeTable()
    edges.add(tap_event(1, "web", dst="api", tls=True))
    edges.add(tap_event(2, "web", dst="api", tls=True))
    edges.add(tap_event(3, "web", dst="store", tls=False))
    edges.add(tap_event(4, "batch", dst="store", tls=True))
    edges.add(tap_event(5, "batch", dst="store", tls=False))
    rows = {(e.src, e.dst): e for e in edges.rows()}
    assert rows[("web", "api")].tls == "yes"
    assert rows[("web", "api")].requests == 2
    assert rows[("web", "api")].server_id == "spiffe://vmesh.local/svc/api"
    assert rows[("web", "store")].tls == "no"
    assert rows[("batch", "store")].tls == "partial"


def test_inbound_from_an_untapped_client_names_the_client_identity() -> None:
    edges = EdgeTable()
    edges.add(tap_event(1, "api", dst="api", proxy_dir="inbound", src="batch"))
    [edge] = edges.rows()
    assert (edge.src, edge.dst, edge.client_id) == (
        "batch", "api", "spiffe://vmesh.local/svc/batch")
