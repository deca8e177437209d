"""Consul health entries map to instances of our own trust domain; registrations carry it, the
/ready check and the reaper."""

import pytest

from vm_mesh.discovery.base import Instance
from vm_mesh.discovery.consul import (
    ConsulSettings,
    instance_from_entry,
    instances_from_health,
    registration,
)

ENTRY = {
    "Node": {"Node": "host-a", "Address": "198.18.0.5"},
    "Service": {
        "ID": "api-host-a", "Service": "api", "Address": "", "Port": 4143,
        "Meta": {"id": "api-1", "proto": "http", "zone": "rack-2", "ver": "1.4", "admin": "4191"},
        "Weights": {"Passing": 30, "Warning": 1},
    },
    "Checks": [],
}


def test_empty_service_address_falls_back_to_the_node_address() -> None:
    instance = instance_from_entry(ENTRY)
    assert instance == Instance(
        service="api", instance_id="api-1", address="198.18.0.5", port=4143, admin_port=4191,
        zone="rack-2", weight=30, version="1.4", proto="http",
    )


@pytest.mark.parametrize(
    ("service", "reason"),
    [
        ({"Port": 0}, "port 0 is not a port"),
        ({"Port": 70000}, "port 70000 is not a port"),
        ({"Port": "4143x"}, "port '4143x' is not a number"),
        ({"Address": ""}, "no address"),  # and the node has none either
        ({"Meta": {"weight": "-5"}}, "weight '-5' is not a number"),
        ({"Meta": {"weight": "20000"}}, "weight 20000 is not between 0 and 10000"),
        ({"Meta": {"admin": "70000"}}, "admin 70000 is not a port"),
        ({"Meta": {"admin": "x"}}, "admin 'x' is not a number"),
        ({"Weights": {"Passing": -1}}, "Weights.Passing -1 is not between 0 and 10000"),
    ],
)
def test_an_entry_out_of_range_announces_no_instance_and_says_why(
    service: dict, reason: str
) -> None:
    node = {"Node": "host-a", "Address": ""} if "Address" in service else ENTRY["Node"]
    entry = {**ENTRY, "Node": node, "Service": {**ENTRY["Service"], **service}}
    with pytest.raises(ValueError, match=reason):
        instance_from_entry(entry)


def test_entries_without_port_or_with_bad_meta_are_skipped() -> None:
    no_port = {**ENTRY, "Service": {**ENTRY["Service"], "Port": 0}}
    bad_admin = {**ENTRY, "Service": {**ENTRY["Service"], "Meta": {"admin": "x"}}}
    assert instances_from_health([no_port, bad_admin, ENTRY]) == (instance_from_entry(ENTRY),)
    assert instances_from_health(None) == ()


def test_registration_checks_ready_over_https_and_deregisters_dead_instances() -> None:
    instance = Instance("api", "api-1", "198.18.0.7", 4143, admin_port=4191, weight=0)
    settings = ConsulSettings(check_interval="3s", deregister_after="2m")
    kwargs = registration(instance, settings)
    assert kwargs["name"] == "api" and kwargs["service_id"] == "api-1"
    assert kwargs["check"] == {
        "Name": "vmesh proxy ready",
        "HTTP": "https://127.0.0.1:4191/ready",  # the local agent probes the local admin port
        "Method": "GET",
        "TLSSkipVerify": True,  # our leaves carry no host name to verify
        "Interval": "3s",
        "Timeout": "2s",
        "DeregisterCriticalServiceAfter": "2m",
    }
    assert kwargs["weights"] == {"passing": 1, "warning": 1}  # Consul refuses weight 0
    assert kwargs["meta"]["admin"] == "4191"


def test_a_drained_instance_reads_back_with_weight_zero() -> None:
    drained = Instance("api", "api-1", "198.18.0.7", 4143, admin_port=4191, weight=0)
    kwargs = registration(drained, ConsulSettings())
    # what the agent's health endpoint returns for that registration
    entry = {
        "Node": {"Node": "web-1", "Address": "198.18.0.7"},
        "Service": {"ID": kwargs["service_id"], "Service": kwargs["name"],
                    "Address": kwargs["address"], "Port": kwargs["port"],
                    "Meta": kwargs["meta"], "Weights": {"Passing": 1, "Warning": 1}},
        "Checks": [],
    }
    assert instance_from_entry(entry) == drained


def test_an_ipv6_admin_address_is_bracketed() -> None:
    instance = Instance("api", "api-1", "::1", 4143, admin_port=4191)
    check = registration(instance, ConsulSettings(check_host="::1"))["check"]
    assert check["HTTP"] == "https://[::1]:4191/ready"


def entry_of(instance_id: str, meta: dict[str, str]) -> dict:
    return {**ENTRY, "Service": {**ENTRY["Service"], "ID": instance_id,
                                 "Meta": {**meta, "id": instance_id}}}


def test_a_watch_keeps_its_own_trust_domain_and_entries_that_name_none() -> None:
    ours = entry_of("api-ours", {"td": "alpha.test"})
    theirs = entry_of("api-theirs", {"td": "beta.test"})
    older = entry_of("api-older", {})  # registered by a vmesh before the `td` meta
    ids = {i.instance_id for i in instances_from_health([ours, theirs, older], "alpha.test")}
    assert ids == {"api-ours", "api-older"}
    assert len(instances_from_health([ours, theirs, older])) == 3  # unscoped: all of them


def test_registration_names_the_trust_domain_in_the_meta() -> None:
    instance = Instance("api", "api-1", "198.18.0.7", 4143, admin_port=4191)
    assert registration(instance, ConsulSettings(), "alpha.test")["meta"]["td"] == "alpha.test"
    assert "td" not in registration(instance, ConsulSettings())["meta"]
