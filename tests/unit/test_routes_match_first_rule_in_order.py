"""Route matching: Gateway API semantics on the normalized path, first rule wins, else default."""

from hypothesis import given
from hypothesis import strategies as st

from proxy.route import DEFAULT_REQUEST_TIMEOUT, RequestFacts, RouteTable
from tests.unit.policy_helpers import policy

ROUTES = """\
kind: ServicePolicy
service: api
timeout: {request: 5s, per_try: 1s}
---
kind: HTTPRoute
name: canary
service: api
rules:
  - name: by-header
    matches:
      - headers: {X-Canary: "1"}
    backends: [{service: api-v2}]
  - name: v2
    matches:
      - path: {prefix: /v2}
        method: GET
      - path: {exact: /legacy}
    backends:
      - {service: api-v1, weight: 90}
      - {service: api-v2, weight: 10}
    timeout: {per_try: 200ms}
    retry: {on: [5xx]}
---
kind: HTTPRoute
name: search
service: api
rules:
  - matches:
      - path: {regex: "/search/[a-z]+"}
        query: {q: {regex: ".+"}, lang: en}
"""


def table() -> RouteTable:
    return RouteTable("api", policy(ROUTES))


def route_of(method: str, target: str, headers: list[tuple[str, str]] | None = None) -> str:
    path, _, query = target.partition("?")
    return table().match(RequestFacts.build(method, path, query, headers or [])).route


def test_header_match_is_case_insensitive_and_wins_first() -> None:
    target = table().match(RequestFacts.build("GET", "/v2/x", "", [("x-canary", "1")]))
    assert target.route == "canary/by-header"
    assert [b.service for b in target.backends] == ["api-v2"]
    assert route_of("GET", "/v2/x", [("X-Canary", "0")]) == "canary/v2"


def test_prefix_matches_on_segment_boundaries() -> None:
    assert route_of("GET", "/v2") == "canary/v2"
    assert route_of("GET", "/v2/items") == "canary/v2"
    assert route_of("GET", "/v2x") == "default"
    assert route_of("POST", "/v2/items") == "default"  # method is part of the match
    assert route_of("POST", "/legacy") == "canary/v2"  # any match of a rule selects it
    assert route_of("GET", "/legacy/x") == "default"


def test_regex_and_query_must_match_fully() -> None:
    assert route_of("GET", "/search/abc?q=x&lang=en") == "search"
    assert route_of("GET", "/search/abc/def?q=x&lang=en") == "default"
    assert route_of("GET", "/search/abc?q=&lang=en") == "default"
    assert route_of("GET", "/search/abc?lang=de&q=x") == "default"
    assert route_of("GET", "/search/abc?lang=de&q=x&lang=en") == "search"


def test_route_timeouts_fall_back_to_service_policy() -> None:
    routes = table()
    v2 = routes.match(RequestFacts.build("GET", "/v2"))
    assert (v2.timeouts.request, v2.timeouts.per_try) == (5.0, 0.2)
    assert v2.retry is not None and v2.source is not None and v2.source.document == 2
    default = routes.match(RequestFacts.build("GET", "/other"))
    assert default.route == "default" and default.retry is None
    assert [b.service for b in default.backends] == ["api"]
    assert (default.timeouts.request, default.timeouts.per_try) == (5.0, 1.0)


def test_service_without_routes_has_only_the_default() -> None:
    routes = RouteTable("web", policy(ROUTES))
    target = routes.match(RequestFacts.build("GET", "/v2"))
    assert target.route == "default" and target.timeouts.per_try is None
    # no policy sets a request timeout: the mesh default still bounds the request
    assert target.timeouts.request == DEFAULT_REQUEST_TIMEOUT
    assert repr(routes) == "<RouteTable web rules=0>"


# segments of normalized paths (a prefix written otherwise is a load error)
segment = st.text(alphabet="abcxyz-._~", min_size=1, max_size=6).filter(
    lambda text: text not in (".", "..")
)


@given(st.lists(segment, min_size=1, max_size=4), st.lists(segment, min_size=0, max_size=3))
def test_prefix_match_equals_segment_prefix(prefix: list[str], rest: list[str]) -> None:
    """A prefix route matches exactly the paths whose leading segments equal the prefix."""
    match = f"[{{path: {{prefix: '/{'/'.join(prefix)}'}}}}]"
    text = f"kind: HTTPRoute\nname: r\nservice: s\nrules:\n  - matches: {match}\n"
    routes = RouteTable("s", policy(text))
    path = "/" + "/".join([*prefix, *rest])
    assert routes.match(RequestFacts.build("GET", path)).route == "r"
    sibling = "/" + "/".join([*prefix[:-1], prefix[-1] + "z", *rest])
    assert routes.match(RequestFacts.build("GET", sibling)).route == "default"
