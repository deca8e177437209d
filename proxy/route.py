"""Route matching: which HTTPRoute rule of a destination service a request falls under.

Matching follows the Gateway API: all conditions of one match must hold, any
match of a rule selects it, the first rule in load order wins (files sorted by
name, documents and rules in file order), and a request no rule matches takes
the service's default route. Path prefixes match on `/` boundaries (`/v2`
matches `/v2` and `/v2/x`, not `/v2x`); regexes must match the whole path.
The path given here must be the normalized path the proxy forwards, so that
routing and authorization see exactly what the application sees.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import parse_qsl

from vm_mesh.policy.model import (
    DEFAULT_ROUTE,
    Backend,
    PathMatch,
    RegexMatch,
    Retry,
    RouteMatch,
    RouteRule,
    Timeouts,
    ValueMatch,
)
from vm_mesh.policy.policyset import PolicySet, Source

DEFAULT_REQUEST_TIMEOUT = 15.0  # seconds, when neither the route nor the service sets one


HeaderPairs = Iterable[tuple[str, str]] | Iterable[tuple[bytes, bytes]]


class RequestFacts:
    """What routing looks at: method, normalized path, query and headers (lower-case names).

    Query and headers are grouped only when a rule looks at them, so a service
    without routes pays nothing for them.
    """

    __slots__ = ("_headers", "_query", "_raw_headers", "_raw_query", "method", "path")

    def __init__(self, method: str, path: str, query: str = "", headers: HeaderPairs = ()) -> None:
        self.method = method
        self.path = path
        self._raw_query = query
        self._raw_headers = headers
        self._query: Mapping[str, tuple[str, ...]] | None = None
        self._headers: Mapping[str, tuple[str, ...]] | None = None

    @classmethod
    def build(
        cls, method: str, path: str, query: str = "", headers: HeaderPairs = ()
    ) -> "RequestFacts":
        """Facts from a request: `query` is the raw query string, headers name/value pairs
        (str, or bytes as parsed off the wire, read as latin-1)."""
        return cls(method, path, query, headers)

    @property
    def query(self) -> Mapping[str, tuple[str, ...]]:
        if self._query is None:
            params: dict[str, list[str]] = {}
            for name, value in parse_qsl(self._raw_query, keep_blank_values=True):
                params.setdefault(name, []).append(value)
            self._query = MappingProxyType({k: tuple(v) for k, v in params.items()})
        return self._query

    @property
    def headers(self) -> Mapping[str, tuple[str, ...]]:
        if self._headers is None:
            grouped: dict[str, list[str]] = {}
            for raw_name, raw_value in self._raw_headers:
                name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else raw_name
                value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
                grouped.setdefault(name.lower(), []).append(value)
            self._headers = MappingProxyType({k: tuple(v) for k, v in grouped.items()})
        return self._headers


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """The outcome of routing: the route label and what the layers below need from it."""

    service: str
    route: str
    route_name: str | None
    backends: tuple[Backend, ...]
    timeouts: Timeouts
    retry: Retry | None
    source: Source | None


def _path_matches(match: PathMatch, path: str) -> bool:
    if match.exact is not None:
        return path == match.exact
    if match.prefix is not None:
        prefix = match.prefix.rstrip("/")
        return not prefix or path == prefix or path.startswith(prefix + "/")
    assert match.regex is not None
    return match.regex.fullmatch(path) is not None


def _value_matches(expected: ValueMatch, values: tuple[str, ...]) -> bool:
    if isinstance(expected, RegexMatch):
        return any(expected.regex.fullmatch(v) for v in values)
    return expected in values


def match_holds(match: RouteMatch, facts: RequestFacts) -> bool:
    """True when every condition of `match` holds for the request."""
    if match.method is not None and match.method != facts.method:
        return False
    if match.path is not None and not _path_matches(match.path, facts.path):
        return False
    for name, expected in match.headers.items():
        if not _value_matches(expected, facts.headers.get(name, ())):
            return False
    for name, expected in match.query.items():
        if not _value_matches(expected, facts.query.get(name, ())):
            return False
    return True


def rule_matches(rule: RouteRule, facts: RequestFacts) -> bool:
    """A rule without matches takes every request; otherwise any one match must hold."""
    return not rule.matches or any(match_holds(m, facts) for m in rule.matches)


def _merge_timeouts(specific: Timeouts | None, fallback: Timeouts | None) -> Timeouts:
    """The rule's timeouts, else the service's; a request timeout always applies (Envoy's
    15 s default), so a request to a host that vanished cannot hang its caller."""
    specific, fallback = specific or Timeouts(), fallback or Timeouts()
    request = specific.request if specific.request is not None else fallback.request
    per_try = specific.per_try if specific.per_try is not None else fallback.per_try
    return Timeouts(
        request=request if request is not None else DEFAULT_REQUEST_TIMEOUT,
        per_try=per_try,
    )


class RouteTable:
    """The compiled routes of one destination service."""

    def __init__(self, service: str, policy: PolicySet) -> None:
        self.service = service
        service_policy = policy.service_policy(service)
        service_timeouts = service_policy.doc.timeout if service_policy else None
        rules: list[tuple[RouteRule, RouteTarget]] = []
        for sourced in policy.routes_for(service):
            route = sourced.doc
            for rule, label in zip(route.rules, route.rule_labels, strict=True):
                target = RouteTarget(
                    service=service,
                    route=label,
                    route_name=route.name,
                    backends=rule.backends or (Backend(service=service),),
                    timeouts=_merge_timeouts(rule.timeout, service_timeouts),
                    retry=rule.retry,
                    source=sourced.source,
                )
                rules.append((rule, target))
        self._rules = tuple(rules)
        self.default = RouteTarget(
            service=service,
            route=DEFAULT_ROUTE,
            route_name=None,
            backends=(Backend(service=service),),
            timeouts=_merge_timeouts(None, service_timeouts),
            retry=None,
            source=service_policy.source if service_policy else None,
        )

    def match(self, facts: RequestFacts) -> RouteTarget:
        """The target of the first rule that matches, else the default route."""
        for rule, target in self._rules:
            if rule_matches(rule, facts):
                return target
        return self.default

    def targets(self) -> tuple[RouteTarget, ...]:
        """Every route target, default last (for metrics pre-registration and `/v1/config`)."""
        return (*(target for _, target in self._rules), self.default)

    def __repr__(self) -> str:
        return f"<RouteTable {self.service} rules={len(self._rules)}>"
