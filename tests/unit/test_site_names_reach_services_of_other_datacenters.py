"""`api.east.mesh` names the service `api` of Consul datacenter `east`: the outbound proxy routes
it as `api.east`, its instances' certificates name `svc/api`, policy may name it (a split across
sites), and what cannot name a site is refused with a reason."""

import random
from pathlib import Path

import pytest

from proxy.breaker import BreakerSettings
from proxy.endpoints import ServiceEndpoints
from proxy.http1 import Http1Error
from proxy.outbound import destination
from proxy.route import RequestFacts
from proxy.traffic import TrafficPolicy
from tests.support import request_head
from tests.unit.policy_helpers import policy
from vm_mesh.config import load_mesh_config
from vm_mesh.discovery import sites
from vm_mesh.discovery.base import EndpointSet, Instance, NotDiscoverable
from vm_mesh.discovery.consul import check_allowed, check_known
from vm_mesh.discovery.factory import consul_settings
from vm_mesh.errors import UserError
from vm_mesh.policy.files import PolicyInvalid


@pytest.mark.parametrize(
    ("raw", "service", "authority", "target"),
    [
        (b"GET /a HTTP/1.1\r\nHost: api.east.mesh\r\n\r\n", "api.east", "api.east.mesh", "/a"),
        (b"GET /a HTTP/1.1\r\nHost: API.East.Mesh.:4140\r\n\r\n", "api.east",
         "API.East.Mesh.:4140", "/a"),
        (b"GET http://api.east.mesh/x?q=1 HTTP/1.1\r\nHost: api\r\n\r\n", "api.east",
         "api.east.mesh", "/x?q=1"),
        (b"GET / HTTP/1.1\r\nHost: web-2.us_west-1.mesh\r\n\r\n", "web-2.us_west-1",
         "web-2.us_west-1.mesh", "/"),
        (b"GET / HTTP/1.1\r\nHost: api.mesh\r\n\r\n", "api", "api.mesh", "/"),  # this site's
    ],
)
def test_a_service_of_another_datacenter_is_named_service_dot_datacenter(
    raw: bytes, service: str, authority: str, target: str
) -> None:
    found = destination(request_head(raw))
    assert (found.service, found.authority, found.target) == (service, authority, target)


@pytest.mark.parametrize(
    "host",
    [
        "api.east",  # without .mesh: an ordinary DNS name, not a site
        "a.b.east.mesh",
        ".east.mesh",
        "api..mesh",
        "-api.east.mesh",
        "api.ea$t.mesh",
        "api.example.com",
    ],
)
def test_dotted_names_that_name_no_site_are_refused(host: str) -> None:
    with pytest.raises(Http1Error) as caught:
        destination(request_head(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()))
    assert (caught.value.status, caught.value.reason) == (400, "http1.unknown_authority")
    assert "<service>.<datacenter>.mesh" in str(caught.value)


def test_names_split_into_service_and_datacenter() -> None:
    assert sites.split("api.east") == ("api", "east")
    assert sites.split("api") == ("api", None)
    assert sites.check_datacenter("us_west-1") == "us_west-1"
    with pytest.raises(ValueError, match="not a datacenter name"):
        sites.check_datacenter("East")


def test_instances_of_another_site_are_reached_as_the_service_their_certificates_name() -> None:
    endpoints = ServiceEndpoints("api.east", BreakerSettings(), rng=random.Random())
    instance = Instance("api", "api-east-1", "198.18.1.5", 4143)
    endpoints.update(EndpointSet("api.east", (instance,), source="consul", updated_at=1.0))
    # the pool key names the service the upstream's identity must carry: spiffe://td/svc/api
    assert endpoints.endpoints["api-east-1"].pool_key == "api@198.18.1.5:4143"
    assert endpoints.describe()["service"] == "api.east"


def test_a_refused_name_drops_what_it_served_says_why_and_is_asked_again_later() -> None:
    endpoints = ServiceEndpoints("api.west", BreakerSettings(), rng=random.Random())
    saved = Instance("api", "api-west-1", "198.18.2.5", 4143)
    endpoints.update(EndpointSet("api.west", (saved,), source="last-known-good",
                                 updated_at=1.0, stale=True))
    endpoints.refuse(NotDiscoverable("discovery.unknown_datacenter", "no datacenter west"),
                     now=100.0)
    assert endpoints.pick() is None and endpoints.view is None
    assert endpoints.describe()["refused"] == {"reason": "discovery.unknown_datacenter",
                                               "detail": "no datacenter west"}
    # the refusal answers requests for 30 s; a request after that asks discovery again
    assert not endpoints.refused_long_ago(now=130.0)
    assert endpoints.refused_long_ago(now=130.5)


def test_datacenters_must_be_allowed_and_known_to_the_agent() -> None:
    check_allowed("east", None)  # no allow-list: any the agent knows
    check_allowed("east", ("east", "west"))
    with pytest.raises(NotDiscoverable) as refused:
        check_allowed("north", ("east", "west"))
    assert refused.value.reason == "discovery.datacenter_not_allowed"
    assert "it lists east, west" in str(refused.value)
    with pytest.raises(NotDiscoverable, match="it lists none"):
        check_allowed("east", ())

    check_known("east", ["dc1", "east"])
    with pytest.raises(NotDiscoverable) as unknown:
        check_known("west", ["dc1", "east"])
    assert unknown.value.reason == "discovery.unknown_datacenter"
    assert "knows no datacenter west (it knows dc1, east)" in str(unknown.value)
    with pytest.raises(ValueError, match="not a list of names"):
        check_known("east", {"dc1": True})


SPLIT_ACROSS_SITES = """\
kind: HTTPRoute
name: api-sites
service: api
rules:
  - backends:
      - {service: api, weight: 80}
      - {service: api.east, weight: 20}
---
kind: ServicePolicy
service: api.east
timeout: {request: 3s}
"""


def test_policy_names_another_sites_service_as_service_dot_datacenter() -> None:
    traffic = TrafficPolicy(policy(SPLIT_ACROSS_SITES), "vmesh.local")
    plan = traffic.service("api").plan(RequestFacts.build("GET", "/", "", []))
    assert [(b.service, b.weight) for b in plan.split.backends] == [("api", 80),
                                                                   ("api.east", 20)]
    assert traffic.service("api.east").settings.timeout.request == 3.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("kind: Mirror\nservice: api\nto: api.b.east\npercent: 5\n",
         "neither a service name nor <service>.<datacenter>"),
        ("kind: Authorization\nservice: store.east\ndefault: deny\n",
         "names a service of another site"),
    ],
)
def test_policy_refuses_names_that_are_no_destination(document: str, message: str) -> None:
    with pytest.raises(PolicyInvalid, match=message):
        policy(document)


def test_mesh_toml_lists_the_datacenters_names_may_name(tmp_path: Path) -> None:
    path = tmp_path / "mesh.toml"
    path.write_text('[discovery]\nbackend = "consul"\ndatacenters = ["east", "us_west-1"]\n')
    settings = load_mesh_config(path).discovery
    assert settings is not None
    assert consul_settings(settings).datacenters == ("east", "us_west-1")

    path.write_text('[discovery]\nbackend = "consul"\ndatacenters = ["east", "West"]\n')
    with pytest.raises(UserError) as caught:
        load_mesh_config(path)
    assert f"{path}:3: discovery.datacenters[1]: 'West' is not a datacenter name" in str(
        caught.value)
