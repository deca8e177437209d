"""Priority failover (ServicePolicy `failover`): a service's requests go to the first failover
destination with an available instance while the service has none (discovery lists none, every
one is ejected, its datacenter is refused), each change is logged once, and the policy refuses
a failover that names the service itself or one destination twice, with file and line."""

import logging
import random
from pathlib import Path

import pytest

from proxy.breaker import BreakerSettings
from proxy.endpoints import ServiceEndpoints
from proxy.failover import choose
from proxy.traffic import TrafficPolicy
from tests.unit.policy_helpers import policy
from vm_mesh.cli import main
from vm_mesh.discovery.base import EndpointSet, Instance, NotDiscoverable
from vm_mesh.policy.files import PolicyInvalid

EJECT_AT_ONCE = BreakerSettings(consecutive_failures=1, min_s=60.0, max_s=60.0)


def destination(name: str, *instance_ids: str) -> ServiceEndpoints:
    """The endpoints of `name` as discovery lists them: `instance_ids` on loopback."""
    endpoints = ServiceEndpoints(name, EJECT_AT_ONCE, random.Random(1))
    listed = tuple(Instance(name.partition(".")[0], i, "127.0.0.1", 4143) for i in instance_ids)
    endpoints.update(EndpointSet(name, listed, source="consul", updated_at=1.0))
    return endpoints


def eject(endpoints: ServiceEndpoints) -> None:
    for endpoint in endpoints.endpoints.values():
        endpoint.breaker.on_failure()


def test_the_first_destination_with_an_available_instance_is_chosen_in_order() -> None:
    east, west = destination("api.east", "east-1"), destination("api.west", "west-1")
    assert choose([east, west]) is east
    eject(east)  # every instance of east ejected by its breaker
    assert choose([east, west]) is west
    listed_none = destination("api.east")
    assert choose([listed_none, west]) is west
    refused = destination("api.north", "north-1")
    refused.refuse(NotDiscoverable("discovery.unknown_datacenter", "no north"), now=1.0)
    assert choose([refused, west]) is west
    eject(west)
    assert choose([east, listed_none, refused, west]) is None
    assert choose([]) is None


def test_a_destination_says_why_it_has_no_available_instance() -> None:
    none_listed = destination("api")
    assert (none_listed.no_instance().reason, str(none_listed.no_instance())) == (
        "no_endpoints", "discovery lists no instance of api")
    ejected = destination("api", "api-1", "api-2")
    assert ejected.available()
    eject(ejected)
    assert not ejected.available()
    assert (ejected.no_instance().reason, str(ejected.no_instance())) == (
        "all_endpoints_ejected", "every instance of api is failing (circuit open)")
    refused = destination("api.west", "west-1")
    refused.refuse(NotDiscoverable("discovery.unknown_datacenter", "no datacenter west"), 1.0)
    assert refused.no_instance().reason == "discovery.unknown_datacenter"


def test_each_change_of_destination_is_logged_once_and_shown_in_endpoints(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = destination("api")
    why = api.no_instance()
    with caplog.at_level(logging.INFO, logger="vmesh.proxy"):
        for _ in range(3):  # three requests failed over: one line
            api.fail_over("api.east", why)
        api.fail_over("api.west", why)  # east has none left either
        api.fail_over(None, why)  # no destination has one
        api.fail_over(None, why)
        shown = api.describe()["failover"]
        api.fail_back()  # an instance of api is back
        api.fail_back()
    changes = [(r.getMessage(), getattr(r, "failover_to", None), getattr(r, "reason", None))
               for r in caplog.records]
    assert changes == [
        ("failing over: the service has no available instance", "api.east", "no_endpoints"),
        ("failing over: the service has no available instance", "api.west", "no_endpoints"),
        ("failover found no destination with an available instance either; requests fail",
         None, "no_endpoints"),
        ("failover ends: the service has an available instance again", None,
         "failover.instance_available"),
    ]
    assert caplog.records[-1].failover_from is None  # type: ignore[attr-defined]
    assert {k: v for k, v in shown.items() if k != "since"} == {
        "to": None, "reason": "no_endpoints", "detail": "discovery lists no instance of api"}
    assert api.failover is None and api.describe()["failover"] is None


def test_a_reload_ends_a_failover_to_a_destination_its_policy_no_longer_lists(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = destination("api")
    api.fail_over("api.east", api.no_instance())
    with caplog.at_level(logging.INFO, logger="vmesh.proxy"):
        api.follow_failover_policy(("api.west", "api.east"))  # still listed: it stays
        assert api.failover is not None and api.failover.to == "api.east"
        api.follow_failover_policy(("api.west",))  # east dropped: the next request chooses
        assert api.failover is None and api.describe()["failover"] is None
        api.fail_over(None, api.no_instance())  # no destination had an instance
        api.follow_failover_policy(("api.west",))  # the next request chooses again
        api.follow_failover_policy(())  # no failover left at all
    assert api.failover is None
    assert [(r.event, r.failover_from, r.reason) for r in caplog.records  # type: ignore[attr-defined]
            if getattr(r, "event", None) == "failover_ended"] == [
        ("failover_ended", "api.east", "failover.removed_by_policy"),
        ("failover_ended", None, "failover.removed_by_policy"),
    ]


FAILOVER = """\
kind: ServicePolicy
service: api
failover: [api.east, api.west, api-legacy]
---
kind: ServicePolicy
service: api.east
failover: [api]
"""


def test_a_service_policy_lists_its_failover_destinations_in_order() -> None:
    traffic = TrafficPolicy(policy(FAILOVER), "vmesh.local")
    assert traffic.service("api").failover == ("api.east", "api.west", "api-legacy")
    assert traffic.service("api.east").failover == ("api",)
    assert traffic.service("web").failover == ()  # none unless a ServicePolicy lists some


@pytest.mark.parametrize(
    ("failover", "error", "code"),
    [
        ("[api.east, api]", "p.yaml:3: ServicePolicy api: failover[1]: 'api' is the service "
         "itself: list where its requests go when it has no instance", "policy.value_error"),
        ("\n  - api.east\n  - api.west\n  - api.east",
         "p.yaml:6: ServicePolicy api: failover[2]: 'api.east' is listed already, as failover[0]",
         "policy.value_error"),
        ("[api.b.east]", "p.yaml:3: ServicePolicy api: failover[0]: 'api.b.east' is neither a "
         "service name nor <service>.<datacenter> (a service of another site, e.g. api.east)",
         "policy.value_error"),
        ("api.east", "p.yaml:3: ServicePolicy api: failover: expected a list, like [api.east]",
         "policy.list_expected"),
    ],
)
def test_a_failover_to_the_service_itself_or_twice_to_one_destination_is_refused(
    failover: str, error: str, code: str
) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        policy(f"kind: ServicePolicy\nservice: api\nfailover: {failover}\n", name="p.yaml")
    assert [(str(e), e.code) for e in caught.value.errors] == [(error, code)]


def test_explain_shows_where_requests_fail_over_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "api.yaml").write_text(FAILOVER)
    args = ["policy", "explain", "--policy-dir", str(tmp_path)]
    assert main([*args, "api"]) == 0
    assert "failover:      api.east,api.west,api-legacy" in capsys.readouterr().out.splitlines()
    assert main([*args, "web"]) == 0
    assert "failover:      -" in capsys.readouterr().out.splitlines()
