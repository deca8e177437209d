"""The endpoints view and `vmesh endpoints` say of each upstream of a proxy its datacenter and
state, refusal and failover first, then what its instances are, and list the instances under
it with their breakers and gateways, from `/v1/endpoints` as a proxy answers it."""

from typing import Any

from console.api import parse_endpoints
from console.models.endpoints import endpoint_json, endpoint_rows, failover_lines
from tests.console.scenes import NOW, endpoints_json


def upstream(service: str, breakers: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
    instances = [{"id": f"{service}-{n}", "addr": f"127.0.0.1:{4143 + n}",
                  "breaker": {"state": state}} for n, state in enumerate(breakers, start=1)]
    return {"service": service, "source": "consul", "stale": False, "refused": None,
            "failover": None, "instances": instances, **fields}


def states(*upstreams: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = endpoint_rows({"web": parse_endpoints({"upstreams": list(upstreams)})})
    return [(r.upstream, r.datacenter, r.state, r.detail) for r in rows if r.instance is None]


def test_each_upstream_says_its_datacenter_and_state() -> None:
    assert states(
        upstream("api", ("closed", "open")),
        upstream("api.east", ("open",)),
        upstream("api.west", refused={"reason": "discovery.unknown_datacenter",
                                      "detail": "the consul agent knows no datacenter west"}),
        upstream("cache"),
        upstream("store", ("closed",), stale=True, source="last-known-good"),
        upstream("web.north", ("closed", "half-open")),
        upstream("log", failover={"to": None, "reason": "all_endpoints_ejected",
                                  "detail": "every instance of log is failing", "since": 1.0}),
    ) == [
        ("api", "local", "degraded", "1 of 2 ejected"),
        ("api.east", "east", "ejected", "all 1 ejected by their breakers"),
        ("api.west", "west", "refused", "discovery.unknown_datacenter"),
        ("cache", "local", "none", "discovery lists no instance (source consul)"),
        ("log", "local", "failover", "no destination available since 00:00:01 "
                                     "(all_endpoints_ejected)"),
        ("store", "local", "stale", "1 from last-known-good, stale"),
        ("web.north", "north", "ok", "2 from consul"),
    ]


def test_instances_are_listed_under_their_upstream_with_breaker_and_gateway() -> None:
    upstreams = {"web": parse_endpoints(endpoints_json())}
    rows = [(r.upstream, r.instance, r.datacenter, r.state, r.detail)
            for r in endpoint_rows(upstreams)]
    assert rows == [
        ("api", None, "local", "failover", "to api.east since 07:56:00 (no_endpoints)"),
        ("api.east", None, "east", "ok", "1 from consul"),
        ("api.east", "east-gw-1", "east", "closed", "gateway api.east.vmesh.local"),
        ("store", None, "local", "degraded", "1 of 2 ejected"),
        ("store", "store-1", "local", "closed", ""),
        ("store", "store-2", "local", "open", ""),
    ]
    assert failover_lines(upstreams, NOW.timestamp()) == [
        "web: api -> api.east since 07:56:00 (4m ago): no_endpoints: "
        "discovery lists no instance of api"]
    api = endpoint_json("web", upstreams["web"][0])
    assert api["failover"] == {"to": "api.east", "reason": "no_endpoints",
                               "detail": "discovery lists no instance of api",
                               "since": "2026-11-25T07:56:00+00:00"}
    east = endpoint_json("web", upstreams["web"][1])
    assert east["instances"] == [{"id": "east-gw-1", "addr": "127.0.0.1:4180",
                                  "datacenter": "east", "breaker": "closed",
                                  "gateway": "api.east.vmesh.local"}]


def test_an_upstream_whose_discovery_query_fails_says_why() -> None:
    refused = "the consul agent refused our ACL token (ACL not found)"
    assert states(
        upstream("api", error=refused),
        upstream("store", ("closed",), stale=True, error="consul: [Errno 111] refused"),
    ) == [
        ("api", "local", "none", f"discovery lists no instance (source consul; its last query "
                                 f"failed: {refused})"),
        ("store", "local", "stale", "1 from consul, stale; its last query failed: consul: "
                                    "[Errno 111] refused"),
    ]
    [api] = parse_endpoints({"upstreams": [upstream("api", error=refused)]})
    assert endpoint_json("web", api)["error"] == refused
