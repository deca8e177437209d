"""The server name a caller sends to another site's gateway names the service, its datacenter
and the trust domain (`api.east.vmesh.local`); the gateway carries only names of its own site
and trust domain, and says why it refuses any other. A caller configured to reach `east`
through its gateways sees them as the instances of `api.east`, at their `wan` addresses, each
with its own pool key per service."""

import random

import pytest

from proxy.breaker import BreakerSettings
from proxy.clienthello import Hello
from proxy.endpoints import ServiceEndpoints
from proxy.gateway import ALERT_UNRECOGNIZED_NAME, Refused, route
from vm_mesh.discovery import sites
from vm_mesh.discovery.base import EndpointSet, Instance
from vm_mesh.discovery.consul import ConsulSettings, gateways_from_health, registration


def test_the_server_name_names_service_datacenter_and_trust_domain() -> None:
    name = sites.gateway_server_name("api", "east", "vmesh.local")
    assert name == "api.east.vmesh.local"
    assert sites.gateway_route(name, "vmesh.local") == ("api", "east")
    assert sites.gateway_route("Web-2.US_West.Vmesh.Local", "vmesh.local") == ("web-2", "us_west")


@pytest.mark.parametrize("name", [
    "api.east.other.td",  # another trust domain
    "api.vmesh.local",  # no datacenter
    "a.b.east.vmesh.local",  # a dotted service
    "vmesh-gateway.east.vmesh.local",  # the gateways themselves
    "-api.east.vmesh.local",
    "vmesh.local",
])
def test_names_that_are_no_service_of_a_site_route_nowhere(name: str) -> None:
    assert sites.gateway_route(name, "vmesh.local") is None


def refusal(server_name: str | None) -> Refused:
    with pytest.raises(Refused) as refused:
        route(Hello(server_name), "east", "vmesh.local")
    return refused.value


def test_the_gateway_routes_names_of_its_own_site_only() -> None:
    assert route(Hello("api.east.vmesh.local"), "east", "vmesh.local") == "api"
    other = refusal("api.west.vmesh.local")
    assert other.reason == "gateway.other_site"
    assert "names datacenter west; this gateway carries east's services" in str(other)
    assert refusal("api.east.evil.td").reason == "gateway.unknown_name"
    assert refusal("vmesh-gateway.east.vmesh.local").reason == "gateway.unknown_name"
    missing = refusal(None)
    assert missing.reason == "gateway.no_sni" and missing.alert == ALERT_UNRECOGNIZED_NAME


def gateway_entry(gateway_id: str, td: str = "vmesh.local", wan: dict | None = None) -> dict:
    return {
        "Node": {"Node": "gw-host", "Address": "10.9.0.2"},
        "Service": {"ID": gateway_id, "Service": "vmesh-gateway", "Address": "10.9.0.2",
                    "Port": 4180, "Meta": {"id": gateway_id, "td": td, "proto": "tls"},
                    "TaggedAddresses": {"lan": {"address": "10.9.0.2", "port": 4180},
                                        **({"wan": wan} if wan else {})}},
        "Checks": [],
    }


def test_gateways_are_reached_at_their_wan_address_with_the_services_name() -> None:
    entries = [gateway_entry("gw-2", wan={"address": "198.18.0.9", "port": 14180}),
               gateway_entry("gw-1", wan={"Address": "198.18.0.8", "Port": 4180}),
               gateway_entry("gw-lan-only"),
               gateway_entry("gw-other-mesh", td="other.td",
                             wan={"address": "198.18.0.7", "port": 4180})]
    found = gateways_from_health(entries, "api.east.vmesh.local", "vmesh.local")
    assert [(g.instance_id, g.authority, g.server_name) for g in found] == [
        ("gw-1", "198.18.0.8:4180", "api.east.vmesh.local"),
        ("gw-2", "198.18.0.9:14180", "api.east.vmesh.local"),
        ("gw-lan-only", "10.9.0.2:4180", "api.east.vmesh.local"),  # no wan: its own address
    ]


def test_a_gateway_registers_its_lan_and_wan_addresses() -> None:
    gateway = Instance("vmesh-gateway", "gw-1", "10.9.0.2", 4180, proto="tls")
    kwargs = registration(gateway, ConsulSettings(), "vmesh.local", wan=("198.18.0.8", 4180))
    assert kwargs["tagged_addresses"] == {"lan": {"address": "10.9.0.2", "port": 4180},
                                          "wan": {"address": "198.18.0.8", "port": 4180}}
    assert kwargs["check"]["TCP"] == "10.9.0.2:4180"  # no admin port: its own port is checked
    assert registration(gateway, ConsulSettings())["tagged_addresses"] is None


def test_a_gateway_with_an_admin_port_announces_it_and_is_still_checked_on_its_port() -> None:
    gateway = Instance("vmesh-gateway", "gw-1", "10.9.0.2", 4180, proto="tls", admin_port=4191)
    kwargs = registration(gateway, ConsulSettings(), "vmesh.local", wan=("198.18.0.8", 4180))
    assert kwargs["meta"]["admin"] == "4191"  # what `vmesh targets` hands Prometheus
    # the port that carries other sites' connections is what the agent judges
    assert kwargs["check"]["TCP"] == "10.9.0.2:4180" and "HTTP" not in kwargs["check"]


def test_connections_to_two_services_through_one_gateway_never_share_a_pool_key() -> None:
    keys = []
    for service in ("api", "web"):
        endpoints = ServiceEndpoints(f"{service}.east", BreakerSettings(), random.Random(1))
        gateway = Instance("vmesh-gateway", "gw-1", "198.18.0.8", 4180,
                           server_name=sites.gateway_server_name(service, "east", "vmesh.local"))
        endpoints.update(EndpointSet(f"{service}.east", (gateway,), "consul", 0.0,
                                     gateways_of="east"))
        keys.append(endpoints.endpoints["gw-1"].pool_key)
        shown = endpoints.describe()["instances"][0]
        assert shown["gateway"] == {"server_name": f"{service}.east.vmesh.local"}
    assert keys == ["api@198.18.0.8:4180/api.east.vmesh.local",
                    "web@198.18.0.8:4180/web.east.vmesh.local"]


def test_with_no_gateway_listed_the_503_names_the_gateways() -> None:
    endpoints = ServiceEndpoints("api.east", BreakerSettings(), random.Random(1))
    endpoints.update(EndpointSet("api.east", (), "consul", 0.0, gateways_of="east"))
    why = endpoints.no_instance()
    assert why.reason == "no_endpoints"
    assert str(why) == ("discovery lists no mesh gateway of datacenter east, which carries "
                        "api.east ([discovery] gateways of mesh.toml)")
