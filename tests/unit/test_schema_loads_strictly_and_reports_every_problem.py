"""vm_mesh.schema: files load strictly into frozen dataclasses, every problem has its place,
and what is loaded dumps back to what a file would say."""

from dataclasses import dataclass, field
from typing import Annotated, Literal

import pytest

from vm_mesh.config import ServiceConfig
from vm_mesh.durations import format_duration, parse_duration
from vm_mesh.policy.loader import load_texts
from vm_mesh.policy.model import Authorization, HTTPRoute
from vm_mesh.schema import ALIAS, Check, Invalid, MinLength, Parse, Range, dump, load


def _upper(value: str) -> str:
    if value != value.upper():
        raise ValueError(f"{value!r} must be upper case")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    seconds: Annotated[float, Parse(parse_duration, format_duration), Range(gt=0)] = 1.0
    tries: Annotated[int, Range(ge=1, le=5)] = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    name: str
    mode: Literal["on", "off"] = "on"
    methods: Annotated[tuple[Annotated[str, Check(_upper)], ...], MinLength(1)] = ("GET",)
    limits: Limits | None = None
    labels: dict[str, str | Limits] = field(default_factory=dict)
    from_: tuple[str, ...] = field(default=(), metadata={ALIAS: "from"})

    def __post_init__(self) -> None:
        if self.name == self.mode:
            raise ValueError("a rule cannot be named after its mode")


def problems(data: object) -> list[str]:
    with pytest.raises(Invalid) as caught:
        load(Rule, data)
    return [str(problem) for problem in caught.value.problems]


def test_a_good_mapping_loads_into_the_dataclass_with_defaults() -> None:
    rule = load(Rule, {"name": "r", "methods": ["GET", "PUT"], "limits": {"seconds": "250ms"},
                       "labels": {"a": "x", "b": {"tries": 3}}, "from": ["spiffe://td/svc/a"]})
    assert rule == Rule(name="r", methods=("GET", "PUT"), limits=Limits(seconds=0.25),
                        labels={"a": "x", "b": Limits(tries=3)}, from_=("spiffe://td/svc/a",))


def test_every_problem_is_reported_with_its_location() -> None:
    assert problems({
        "mode": "maybe",
        "methods": ["GET", "put"],
        "limits": {"seconds": 2, "tries": 9, "retries": 1},
        "labels": {"a": 1},
    }) == [
        "name: Field required",
        "mode: Input should be 'on' or 'off'",
        "methods[1]: 'put' must be upper case",
        "limits.seconds: duration must be a string with a unit like 2s or 500ms, not 2",
        "limits.tries: Input should be less than or equal to 5",
        "limits.retries: unknown key; did you mean 'tries'?",
        "labels.a: Input should be a valid string (got 1)",
    ]


def test_numbers_and_booleans_are_never_read_from_one_another_or_from_strings() -> None:
    assert problems({"name": "r", "limits": {"tries": "3"}}) == [
        "limits.tries: Input should be a valid integer (got '3')"
    ]
    assert problems({"name": "r", "limits": {"tries": True}}) == [
        "limits.tries: Input should be a valid integer (got True)"
    ]
    assert problems({"name": 7}) == ["name: Input should be a valid string (got 7)"]


def test_lists_and_mappings_must_have_their_shape() -> None:
    assert problems({"name": "r", "methods": "GET"}) == ["methods: expected a list, like [GET]"]
    assert problems({"name": "r", "methods": []}) == ["methods: should have at least 1 item"]
    assert problems({"name": "r", "limits": ["1s"]}) == [
        "limits: Input should be a mapping of Limits fields (got ['1s'])"
    ]
    assert problems(["name"]) == ["Input should be a mapping of Rule fields (got ['name'])"]


def test_a_check_across_fields_is_reported_where_the_object_is() -> None:
    assert problems({"name": "on"}) == ["a rule cannot be named after its mode"]


def test_an_alias_is_the_only_key_a_file_may_use() -> None:
    assert problems({"name": "r", "from_": ["x"]}) == ["from_: unknown key; did you mean 'from'?"]


def test_loaded_policy_dumps_back_to_what_the_file_says() -> None:
    text = """\
kind: HTTPRoute
name: canary
service: api
rules:
  - matches: [{path: {regex: "/v[0-9]+"}, headers: {X-Canary: "1", x-user: {regex: "a.*"}}}]
    backends: [{service: api-v2, weight: 10}]
    timeout: {request: 1500ms}
---
kind: Authorization
service: api
rules:
  - from: ["spiffe://vmesh.local/svc/*"]
    paths: ["/items/**"]
"""
    route, authz = (item.doc for item in load_texts([("p.yaml", text)]).documents)
    assert isinstance(route, HTTPRoute) and isinstance(authz, Authorization)
    assert dump(route) == {
        "kind": "HTTPRoute",
        "name": "canary",
        "service": "api",
        "rules": [{
            "matches": [{"path": {"regex": "/v[0-9]+"},
                         "headers": {"x-canary": "1", "x-user": {"regex": "a.*"}},
                         "query": {}}],
            "backends": [{"service": "api-v2", "weight": 10}],
            "timeout": {"request": "1.5s"},
        }],
    }
    assert dump(authz)["rules"] == [
        {"action": "allow", "from": ["spiffe://vmesh.local/svc/*"], "paths": ["/items/**"]}
    ]
    assert load(HTTPRoute, dump(route)) == route


def test_the_effective_service_config_shows_unset_settings_too() -> None:
    config = load(ServiceConfig, {"service": "web", "app_port": 8080,
                                  "timeouts": {"connect": "500ms"}})
    shown = dump(config, exclude_none=False)
    assert shown["identity_url"] is None and shown["discovery"] is None
    assert shown["timeouts"] == {"connect": 0.5, "header": 10.0, "idle": 60.0, "app_idle": 4.0,
                                  "drain": 30.0}
    assert "identity_url" not in dump(config)
