"""Policy files: the DESIGN.md shapes load; every error of every file is reported with its line."""

import json
import textwrap
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from vm_mesh.cli import main
from vm_mesh.policy.files import PolicyInvalid
from vm_mesh.policy.loader import load_dir, load_files, load_texts
from vm_mesh.policy.model import HTTPRoute, ServicePolicy

DESIGN_EXAMPLE = """\
kind: HTTPRoute
name: api-canary
service: api
rules:
  - matches:
      - path: {prefix: /v2}
        method: GET
        headers: {x-canary: "1"}
    backends:
      - {service: api-v1, weight: 90}
      - {service: api-v2, weight: 10}
    timeout: {request: 2s, per_try: 500ms}
    retry: {on: [5xx, connect-failure], attempts: 2}
---
kind: ServicePolicy
service: api
retry_budget: {ratio: 0.2, min_per_second: 10, window: 10s}
circuit_breaker: {consecutive_failures: 7, backoff: {min: 1s, max: 60s, jitter: 0.5}}
opaque_ports: [5432]
---
kind: Mirror
service: api
to: api-shadow
percent: 5
---
kind: Authorization
service: store
mode: enforce
default: deny
rules:
  - from: ["spiffe://vmesh.local/svc/api"]
    methods: [GET, PUT]
    paths: ["/items/*"]
"""


def errors_of(*texts: tuple[str, str]) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        load_texts(texts)
    return [str(e) for e in caught.value.errors]


def test_design_example_loads_with_sources(tmp_path: Path) -> None:
    (tmp_path / "10-api.yaml").write_text(DESIGN_EXAMPLE)
    policy = load_dir(tmp_path)
    route = policy.routes_for("api")[0]
    assert isinstance(route.doc, HTTPRoute)
    assert route.doc.rules[0].retry is not None
    assert route.doc.rules[0].retry.on == ("5xx", "connect-failure")  # `on` is not a boolean
    assert route.doc.rules[0].timeout.per_try == 0.5
    assert (route.source.document, route.source.line) == (1, 1)
    service_policy = policy.service_policy("api")
    assert isinstance(service_policy.doc, ServicePolicy)
    assert service_policy.source.document == 2 and service_policy.source.line == 15
    described = policy.describe()
    kinds = [d["kind"] for d in described]
    assert kinds == ["HTTPRoute", "ServicePolicy", "Mirror", "Authorization"]
    source = {"file": str(tmp_path / "10-api.yaml"), "document": 4, "line": 26}
    assert described[3]["source"] == source
    assert described[0]["spec"]["rules"][0]["timeout"] == {"request": "2s", "per_try": "500ms"}


def test_policy_set_is_immutable() -> None:
    policy = load_texts([("a.yaml", DESIGN_EXAMPLE)])
    route = policy.routes_for("api")[0].doc
    with pytest.raises(FrozenInstanceError):
        route.name = "other"  # type: ignore[misc]
    assert isinstance(route.rules, tuple)


def test_errors_point_at_the_offending_line() -> None:
    text = textwrap.dedent(
        """\
        kind: HTTPRoute
        name: api
        service: api
        rules:
          - matches:
              - path: {prefix: v2}
                method: get
            timeout: {request: 2}
            retry: {on: [6xx], tries: 3}
            backends:
              - {service: api-v1, weight: "90"}
        """
    )
    assert errors_of(("r.yaml", text)) == [
        "r.yaml:6: HTTPRoute api: rules[0].matches[0].path.prefix: path 'v2' must start with '/'",
        "r.yaml:7: HTTPRoute api: rules[0].matches[0].method: invalid method 'get': "
        "write it in upper case, like GET",
        "r.yaml:8: HTTPRoute api: rules[0].timeout.request: "
        "duration must be a string with a unit like 2s or 500ms, not 2",
        "r.yaml:9: HTTPRoute api: rules[0].retry.on[0]: cannot retry on '6xx': "
        "use 5xx, gateway-error, connect-failure, reset or a status code 400-599",
        "r.yaml:9: HTTPRoute api: rules[0].retry.tries: unknown key; "
        "expected one of on, attempts, methods, backoff",
        "r.yaml:11: HTTPRoute api: rules[0].backends[0].weight: "
        "Input should be a valid integer (got '90')",
    ]


def test_regex_is_compiled_at_load() -> None:
    text = "kind: HTTPRoute\nname: r\nservice: api\nrules:\n  - matches: [{path: {regex: '(v'}}]\n"
    [error] = errors_of(("r.yaml", text))
    assert error.startswith("r.yaml:5: HTTPRoute r: rules[0].matches[0].path.regex: invalid")


def test_all_errors_of_all_files_are_collected() -> None:
    bad_kind = "kind: Gateway\nname: x\n"
    broken_yaml = "kind: Mirror\nservice: api\n  to: x\n"
    duplicate_key = "kind: Mirror\nservice: api\nservice: web\nto: shadow\npercent: 5\n"
    missing = "---\nkind: Mirror\nservice: api\n---\n- just a list\n"
    errors = errors_of(
        ("a.yaml", bad_kind),
        ("b.yaml", broken_yaml),
        ("c.yaml", duplicate_key),
        ("d.yaml", missing),
    )
    assert errors == [
        "a.yaml:1: document 1: unknown kind 'Gateway' "
        "(expected one of HTTPRoute, ServicePolicy, Mirror, Authorization)",
        "b.yaml:3: invalid YAML: mapping values are not allowed here",
        "c.yaml:3: duplicate key 'service' (first at line 2)",
        "d.yaml:2: Mirror api: to: Field required",
        "d.yaml:2: Mirror api: percent: Field required",
        "d.yaml:5: a policy document must be a mapping",
    ]


def test_cross_document_conflicts_are_errors() -> None:
    first = (
        "kind: ServicePolicy\nservice: api\n---\n"
        "kind: HTTPRoute\nname: r\nservice: api\nrules: [{}]\n"
    )
    second = (
        "kind: ServicePolicy\nservice: api\n---\n"
        "kind: Authorization\nservice: api\nrules:\n  - routes: [r, nope]\n"
    )
    assert errors_of(("a.yaml", first), ("b.yaml", second)) == [
        "b.yaml:1: ServicePolicy api: already defined at a.yaml:1",
        "b.yaml:7: Authorization api: rules[0].routes[1]: no HTTPRoute 'nope' for service api",
    ]


def test_identity_patterns_must_be_spiffe_ids() -> None:
    text = "kind: Authorization\nservice: s\nrules:\n  - from: [api]\n    paths: [items]\n"
    assert errors_of(("z.yaml", text)) == [
        "z.yaml:4: Authorization s: rules[0].from[0]: "
        "client identity 'api' must be a spiffe:// ID or pattern",
        "z.yaml:5: Authorization s: rules[0].paths[0]: path 'items' must start with '/'",
    ]


def test_scalar_where_a_list_belongs() -> None:
    text = "kind: Authorization\nservice: s\nrules:\n  - methods: GET\n"
    assert errors_of(("l.yaml", text)) == [
        "l.yaml:4: Authorization s: rules[0].methods: expected a list, like [GET]",
    ]


def test_cli_check_prints_one_line_per_error_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(DESIGN_EXAMPLE)
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Mirror\nservice: api\nto: api\npercent: 500\n")
    assert main(["policy", "check", str(good), str(bad)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{bad}:4: Mirror api: percent: Input should be less than or equal to 100",
    ]
    assert err == "vmesh: policy check failed: 1 error\n"
    assert main(["policy", "check", str(good)]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("policy OK: 1 file, 1 Authorization, 1 HTTPRoute")


def test_cli_check_defaults_to_the_policy_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VMESH_ROOT", str(tmp_path))
    directory = tmp_path / "etc" / "vmesh" / "policy.d"
    directory.mkdir(parents=True)
    (directory / "a.yaml").write_text(DESIGN_EXAMPLE)
    (directory / "notes.txt").write_text("not policy")
    assert main(["policy", "check"]) == 0
    assert "services: api, store" in capsys.readouterr().out
    assert load_files([directory / "a.yaml"]).services() == ["api", "store"]


def test_cli_check_without_a_policy_directory_finds_no_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VMESH_ROOT", str(tmp_path))  # a fresh host: no etc/vmesh/policy.d
    assert main(["policy", "check"]) == 0  # the proxy runs with no policy there too
    assert capsys.readouterr().out == "policy OK: 0 files, no documents; services: none\n"
    missing = tmp_path / "nowhere.yaml"  # a file named on the command line must exist
    assert main(["policy", "check", str(missing)]) == 1
    assert capsys.readouterr().out.startswith(f"{missing}:0: cannot read:")


def test_cli_explain_shows_route_backends_and_authorization(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(DESIGN_EXAMPLE)
    args = ["policy", "explain", "--policy-dir", str(tmp_path)]
    assert main([*args, "api", "/v2/x/../y", "-H", "X-Canary: 1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "path:          /v2/y" in lines
    assert "route:         api-canary" in lines
    assert "backends:      api-v1=90 api-v2=10" in lines
    assert "retry:         on=5xx,connect-failure attempts=2 backoff=base=25ms max=250ms" in lines
    assert main([*args, "store", "/items/1", "-X", "DELETE", "--from",
                 "spiffe://vmesh.local/svc/api", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["authorization"] == {
        "decision": "deny", "rule": "store.default", "reason": "authz.default_deny"
    }
    assert main([*args, "store", "/a%00b"]) == 1
    assert capsys.readouterr().err == "vmesh: a proxy rejects this target: http1.path.nul\n"


def test_a_character_yaml_forbids_is_an_error_with_its_line() -> None:
    assert errors_of(("r.yaml", "kind: Mirror\nservice: api\nto: sh\x07dow\npercent: 5\n")) == [
        "r.yaml:3: invalid YAML: special characters are not allowed (character #x07)",
    ]


def test_route_labels_are_unique_so_no_rule_takes_another_ones_place() -> None:
    assert errors_of(("r.yaml", "kind: HTTPRoute\nname: default\nservice: api\nrules: [{}]\n")) == [
        "r.yaml:2: HTTPRoute default: name: 'default' names the route of requests no rule "
        "matches; choose another name"]
    twice = "kind: HTTPRoute\nname: r\nservice: api\nrules:\n  - name: \"1\"\n  - {}\n"
    assert errors_of(("r.yaml", twice)) == [
        "r.yaml:6: HTTPRoute r: rules[1]: would be known as '1', as rules[0] is: "
        "give each rule its own name"]


def test_paths_no_request_can_carry_are_errors() -> None:
    """Requests are matched on their normalized path: a path written otherwise would never
    match, and a deny rule that never matches fails open."""
    text = textwrap.dedent(
        """\
        kind: Authorization
        service: s
        rules:
          - action: deny
            paths:
              - /files/my docs/*
              - /admin//*
              - /public/../admin/**
              - /a%2fb
              - /caf\u00e9
              - /search?q=*
              - /x%00
              - /items/%41/%7e/%3f
        ---
        kind: HTTPRoute
        name: r
        service: s
        rules:
          - matches: [{path: {prefix: /v2/./x}}, {path: {exact: "/a\\\\b"}}]
        """
    )
    paths, matches = "Authorization s: rules[0].paths", "HTTPRoute r: rules[0].matches"
    normal = "the proxy matches the normalized path, write"
    encoded = "requests carry it percent-encoded, write"
    expected = [
        (6, f"{paths}[0]", "/files/my docs/*", f"{encoded} '/files/my%20docs/*'"),
        (7, f"{paths}[1]", "/admin//*", f"{normal} '/admin/*'"),
        (8, f"{paths}[2]", "/public/../admin/**", f"{normal} '/admin/**'"),
        (9, f"{paths}[3]", "/a%2fb", f"{normal} '/a/b'"),
        (10, f"{paths}[4]", "/caf\u00e9", f"{encoded} '/caf%C3%A9'"),
        (11, f"{paths}[5]", "/search?q=*", "'?' begins the query, which is no part of the path"),
        (12, f"{paths}[6]", "/x%00", "the proxy refuses such a request (http1.path.nul)"),
        (13, f"{paths}[7]", "/items/%41/%7e/%3f", f"{normal} '/items/A/~/%3F'"),
        (19, f"{matches}[0].path.prefix", "/v2/./x", f"{normal} '/v2/x'"),
        (19, f"{matches}[1].path.exact", "/a\\b", f"{normal} '/a/b'"),
    ]
    assert errors_of(("p.yaml", text)) == [
        f"p.yaml:{line}: {where}: path {path!r} never matches a request: {why}"
        for line, where, path, why in expected
    ]


SHAPE = (
    "it has the form spiffe://<trust-domain>/<kind>/<name> ('*' stands for one part or a piece "
    "of one, '**' for any number of parts)"
)


def deny_from(patterns: list[str]) -> str:
    """An Authorization of service s whose one rule denies callers of `patterns` (line 6 on)."""
    lines = "".join(f"      - {pattern}\n" for pattern in patterns)
    return "kind: Authorization\nservice: s\nrules:\n  - action: deny\n    from:\n" + lines


def test_identity_patterns_no_caller_can_have_are_errors() -> None:
    """A caller's identity is spiffe://<td>/<kind>/<name> in lower case: a pattern no such ID
    fits would never match, and a deny rule that never matches fails open."""
    good = [
        "spiffe://vmesh.local/svc/api", "spiffe://vmesh.local/svc/web-*", "spiffe://*/svc/api",
        "spiffe://vmesh.local/**", "spiffe://other.example/svc/**", "spiffe://vmesh.local/*/x",
        "spiffe://vmesh.local/operator/*", "spiffe://**",
    ]
    assert load_texts([("ok.yaml", deny_from(good))]).authorizations_for("s")
    bad = [
        ("spiffe://vmesh.local/web", SHAPE),
        ("spiffe://vmesh.local/svc/web/**", SHAPE),
        ("spiffe://vmesh.local/svc/web/", SHAPE),
        ("spiffe://Vmesh.local/svc/web", "invalid trust domain 'Vmesh.local': use lowercase "
         "letters, digits, '.' and '-'"),
        ("spiffe://vmesh.local/service/web", "kind 'service' is none of svc, operator, host"),
        ("spiffe://vmesh.local/svc/Web", "invalid svc name 'Web': use 1-63 lowercase letters, "
         "digits, '-', '_' or '.', starting and ending with a letter or digit"),
        ("spiffe://vmesh.local/svc/Web-*", "'Web-*' holds a character no identity has: use "
         "lowercase letters, digits, '-', '_', '.' and '*'"),
        ("spiffe://vmesh.local/SVC/**", "kind 'SVC' is none of svc, operator, host"),
    ]
    assert errors_of(("p.yaml", deny_from([pattern for pattern, _ in bad]))) == [
        f"p.yaml:{6 + index}: Authorization s: rules[0].from[{index}]: client identity "
        f"{pattern!r} never matches a caller: {why}"
        for index, (pattern, why) in enumerate(bad)
    ]
