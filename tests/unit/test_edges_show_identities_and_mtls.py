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


def test_a_client_without_identity_is_one_edge_whatever_its_source_port() -> None:
    edges = EdgeTable()
    for n, addr in enumerate(("10.0.0.5:40001", "10.0.0.5:40002", "[fd00::7]:40003")):
        edges.add(tap_event(n, "api", dst="api", proxy_dir="inbound", tls=False, src_addr=addr))
    rows = {(e.src, e.dst): e.requests for e in edges.rows()}
    assert rows == {("10.0.0.5", "api"): 2, ("fd00::7", "api"): 1}


def test_a_request_between_instances_of_tapped_services_is_one_request_of_one_edge() -> None:
    edges = EdgeTable()
    edges.add(tap_event(1, "web-1", dst="api", src="web"))  # outbound, with its own identity
    edges.add(tap_event(1, "api-2", dst="api", proxy_dir="inbound", src="web"))
    [edge] = edges.rows()
    assert (edge.src, edge.dst, edge.requests) == ("web", "api", 1)
