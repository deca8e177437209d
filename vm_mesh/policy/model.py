"""The policy documents: one strict, frozen dataclass per `kind:`, loaded by `vm_mesh.schema`.

The YAML shapes are the contract of DESIGN.md (after the Gateway API and
Linkerd's policy resources). Everything is validated strictly: unknown fields
are errors, numbers are not read from strings, durations need a unit, and
regular expressions and identity globs are compiled here, at load time, so a
broken pattern is a load error and never a request-time surprise.

A destination (a route's, a backend's, a ServicePolicy's, a mirror's) may be a
service of another site, `api.east` (vm_mesh.discovery.sites); an
Authorization is about a service of this proxy's own site.
"""

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import quote

from identity import spiffe
from proxy.normalize import INVALID_CHARACTER, PATH_CHARACTERS, BadPath, normalize_target
from vm_mesh.discovery import sites
from vm_mesh.durations import format_duration, parse_duration
from vm_mesh.schema import ALIAS, Check, FieldError, MinLength, Parse, Range

# Bodies up to this size are buffered so that a request can be retried or mirrored.
MAX_REPLAY_BODY = 64 * 1024

_METHOD = re.compile(r"^[A-Z][A-Z0-9_-]{0,31}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")


def _check_service(value: str) -> str:
    name = spiffe.check_name(value, "service name")
    if "." in name:
        raise ValueError(f"{name!r} names a service of another site; an Authorization applies "
                         "to the service of the proxy that receives the requests")
    return name


def _check_destination(value: str) -> str:
    return sites.check_destination(spiffe.check_name(value, "service name"))


def _check_name(value: str) -> str:
    return spiffe.check_name(value, "name")


def _check_method(value: str) -> str:
    if not _METHOD.match(value):
        raise ValueError(f"invalid method {value!r}: write it in upper case, like GET")
    return value


def _check_header_name(value: str) -> str:
    lowered = value.lower()
    if not _HEADER_NAME.match(lowered):
        raise ValueError(f"invalid header name {value!r}")
    return lowered


def _compile_regex(value: Any) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise ValueError(f"a regular expression must be a string, not {value!r}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None


def _check_absolute_path(value: str) -> str:
    """A path as requests are matched: normalized (proxy.normalize), else no request would
    ever match it, and a deny rule that never matches fails open."""
    if not value.startswith("/"):
        raise ValueError(f"path {value!r} must start with '/'")
    try:
        target = normalize_target(value)
    except BadPath as bad:
        if bad.reason != INVALID_CHARACTER:
            raise ValueError(f"path {value!r} never matches a request: the proxy refuses "
                             f"such a request ({bad.reason})") from None
        encoded = quote(value, safe=PATH_CHARACTERS)
        raise ValueError(f"path {value!r} never matches a request: requests carry it "
                         f"percent-encoded, write {encoded!r}") from None
    if target.query:
        raise ValueError(f"path {value!r} never matches a request: '?' begins the query, "
                         "which is no part of the path")
    if target.path != value:
        raise ValueError(f"path {value!r} never matches a request: the proxy matches the "
                         f"normalized path, write {target.path!r}")
    return value


@dataclass(frozen=True, slots=True)
class Glob:
    """A pattern where `*` matches within one `/`-separated segment and `**` across segments.

    Used for client identities and request paths: `spiffe://vmesh.local/svc/*` never
    matches a name in another trust domain, and `/items/*` matches `/items/42` only.
    """

    text: str
    pattern: re.Pattern[str]

    @classmethod
    def parse(cls, value: Any) -> "Glob":
        if not isinstance(value, str) or not value:
            raise ValueError(f"a pattern must be a non-empty string, not {value!r}")
        parts = re.split(r"(\*\*|\*)", value)
        regex = "".join(
            ".*" if part == "**" else "[^/]*" if part == "*" else re.escape(part) for part in parts
        )
        return cls(value, re.compile(regex))

    def matches(self, value: str) -> bool:
        return self.pattern.fullmatch(value) is not None

    def __str__(self) -> str:
        return self.text


_SPIFFE = "spiffe://"
_PATTERN_PART = re.compile(r"^[a-z0-9_.*-]+$")


def _check_identity_part(index: int, part: str, kind: str) -> None:
    """Raise ValueError unless `part` may be part `index` (trust domain, kind, name) of an ID."""
    if index == 0:
        spiffe.check_trust_domain(part)
    elif index == 1 and part not in spiffe.KINDS:
        raise ValueError(f"kind {part!r} is none of {', '.join(spiffe.KINDS)}")
    elif index == 2:
        spiffe.check_name(part, f"{kind} name")


def _principal_problem(text: str) -> str | None:
    """Why no caller's identity (spiffe://<td>/<kind>/<name>) can match the pattern `text`."""
    parts = text[len(_SPIFFE) :].split("/")
    spread = next((i for i, part in enumerate(parts) if "**" in part), None)  # parts after: any
    fixed = parts if spread is None else parts[:spread]
    if len(parts) != 3 if spread is None else spread > 2:  # '**' in part 4 needs a 4th part
        return ("it has the form spiffe://<trust-domain>/<kind>/<name> ('*' stands for one "
                "part or a piece of one, '**' for any number of parts)")
    kind = parts[1] if len(parts) > 1 and parts[1] in spiffe.KINDS else "identity"
    try:
        for index, part in enumerate(parts):
            if "*" in part or index >= len(fixed):
                if not _PATTERN_PART.match(part):
                    raise ValueError(f"{part!r} holds a character no identity has: use "
                                     "lowercase letters, digits, '-', '_', '.' and '*'")
            else:
                _check_identity_part(index, part, kind)
    except ValueError as exc:
        return str(exc)
    return None


def _parse_principal(value: Any) -> Glob:
    glob = Glob.parse(value)
    if not glob.text.startswith(_SPIFFE):
        raise ValueError(f"client identity {glob.text!r} must be a spiffe:// ID or pattern")
    if problem := _principal_problem(glob.text):
        raise ValueError(f"client identity {glob.text!r} never matches a caller: {problem}")
    return glob


def _parse_path_glob(value: Any) -> Glob:
    glob = Glob.parse(value)
    _check_absolute_path(glob.text)
    return glob


ServiceName = Annotated[str, Check(_check_service)]
Destination = Annotated[str, Check(_check_destination)]  # a service, or another site's
Name = Annotated[str, Check(_check_name)]
Method = Annotated[str, Check(_check_method)]
HeaderName = Annotated[str, Check(_check_header_name)]
AbsolutePath = Annotated[str, Check(_check_absolute_path)]
Duration = Annotated[float, Parse(parse_duration, format_duration), Range(gt=0)]
Regex = Annotated[re.Pattern[str], Parse(_compile_regex, lambda pattern: pattern.pattern)]
Principal = Annotated[Glob, Parse(_parse_principal, str)]
PathGlob = Annotated[Glob, Parse(_parse_path_glob, str)]
Port = Annotated[int, Range(ge=1, le=65535)]
Fraction = Annotated[float, Range(ge=0, le=1)]


# --- HTTPRoute -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PathMatch:
    """Exactly one of: exact path, path prefix (on `/` boundaries), or full-match regex."""

    exact: AbsolutePath | None = None
    prefix: AbsolutePath | None = None
    regex: Regex | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a path match needs exactly one of exact, prefix or regex")


@dataclass(frozen=True, slots=True, kw_only=True)
class RegexMatch:
    """A header or query value matched by a full-match regular expression."""

    regex: Regex


ValueMatch = str | RegexMatch  # an exact value, or {regex: ...}


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteMatch:
    """All conditions of one match must hold; an empty match matches every request."""

    path: PathMatch | None = None
    method: Method | None = None
    headers: dict[HeaderName, ValueMatch] = field(default_factory=dict)
    query: dict[str, ValueMatch] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    service: Destination
    weight: Annotated[int, Range(ge=0, le=100_000)] = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """`request` bounds the whole request including retries; `per_try` bounds each attempt."""

    request: Duration | None = None
    per_try: Duration | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBackoff:
    base: Duration = 0.025
    max: Duration = 0.25


RETRY_CONDITIONS = ("5xx", "gateway-error", "connect-failure", "reset")


def _parse_retry_condition(value: Any) -> str | int:
    if value in RETRY_CONDITIONS or (
        isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599
    ):
        return value
    raise ValueError(
        f"cannot retry on {value!r}: use {', '.join(RETRY_CONDITIONS)} or a status code 400-599"
    )


RetryCondition = Annotated[str | int, Parse(_parse_retry_condition)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """Opt-in retries of one route: on what, how many, for which methods."""

    on: Annotated[tuple[RetryCondition, ...], MinLength(1)]
    attempts: Annotated[int, Range(ge=1, le=10)] = 2
    methods: tuple[Method, ...] | None = None
    backoff: RetryBackoff = RetryBackoff()


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRule:
    """One rule: first rule whose matches hold decides backends, timeouts and retries."""

    name: Name | None = None
    matches: tuple[RouteMatch, ...] = ()
    backends: tuple[Backend, ...] = ()
    timeout: Timeouts | None = None
    retry: Retry | None = None

    def __post_init__(self) -> None:
        if self.backends and not any(b.weight for b in self.backends):
            raise ValueError("at least one backend needs a weight above 0")


DEFAULT_ROUTE = "default"  # the route of a service's requests that no rule matches


@dataclass(frozen=True, slots=True, kw_only=True)
class HTTPRoute:
    """Rules for requests to `service`; each rule is known by `name/rule` (the rule's name, or
    its index when it has none), or by `name` alone when there is one rule: in metrics, tap
    and the proxy's table of plans, so these labels must be unique."""

    kind: Literal["HTTPRoute"]
    name: Name
    service: Destination
    rules: Annotated[tuple[RouteRule, ...], MinLength(1)]

    def __post_init__(self) -> None:
        if self.name == DEFAULT_ROUTE:
            raise FieldError(("name",), f"{DEFAULT_ROUTE!r} names the route of requests no "
                             "rule matches; choose another name")
        first: dict[str, int] = {}
        for index, key in enumerate(self._rule_keys):
            if key in first:
                raise FieldError(("rules", index), f"would be known as {key!r}, as "
                                 f"rules[{first[key]}] is: give each rule its own name")
            first[key] = index

    @property
    def _rule_keys(self) -> tuple[str, ...]:
        """Each rule's name, or its index when it has none."""
        return tuple(rule.name or str(index) for index, rule in enumerate(self.rules))

    @property
    def rule_labels(self) -> tuple[str, ...]:
        """Each rule's label, in order: `name/key`, or `name` alone for a single rule."""
        if len(self.rules) == 1:
            return (self.name,)
        return tuple(f"{self.name}/{key}" for key in self._rule_keys)


# --- ServicePolicy ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBudget:
    """Retries allowed: `ratio` of live requests plus `min_per_second`, over `window`."""

    ratio: Fraction = 0.2
    min_per_second: Annotated[float, Range(ge=0)] = 10.0
    window: Duration = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerBackoff:
    min: Duration = 1.0
    max: Duration = 60.0
    jitter: Fraction = 0.5

    def __post_init__(self) -> None:
        if self.max < self.min:
            raise ValueError("backoff max must not be below min")


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreaker:
    consecutive_failures: Annotated[int, Range(ge=1, le=10_000)] = 7
    backoff: BreakerBackoff = BreakerBackoff()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServicePolicy:
    """Defaults for one destination service.

    `opaque_ports`: ports on which connections to the service are never inspected (a
    per-upstream TCP listener on one of them relays at once); `detect_timeout`: how long
    such a listener waits for an HTTP request line before relaying as opaque TCP;
    `failover`: where the service's requests go, in order, while it has no available
    instance (another site's `api.east`, or another service): the first destination with
    one, its own failover never followed.
    """

    kind: Literal["ServicePolicy"]
    name: Name | None = None
    service: Destination
    timeout: Timeouts | None = None
    retry_budget: RetryBudget = RetryBudget()
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    opaque_ports: tuple[Port, ...] = ()
    detect_timeout: Duration | None = None
    failover: tuple[Destination, ...] = ()

    def __post_init__(self) -> None:
        first: dict[str, int] = {}
        for index, destination in enumerate(self.failover):
            if destination == self.service:
                raise FieldError(("failover", index), f"{destination!r} is the service "
                                 "itself: list where its requests go when it has no instance")
            if destination in first:
                raise FieldError(("failover", index), f"{destination!r} is listed already, "
                                 f"as failover[{first[destination]}]")
            first[destination] = index


# --- Mirror ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Mirror:
    """Copy `percent` of the requests to `service` to the shadow service `to`."""

    kind: Literal["Mirror"]
    name: Name | None = None
    service: Destination
    to: Destination
    percent: Annotated[float, Range(gt=0, le=100)]

    def __post_init__(self) -> None:
        if self.to == self.service:
            raise ValueError("a service cannot mirror to itself")


# --- Authorization ---------------------------------------------------------

AuthzMode = Literal["enforce", "audit"]
AuthzDefault = Literal["deny", "allow-mesh", "allow-all"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationRule:
    """Who may call: every given condition must hold; an omitted one holds for any request."""

    name: Name | None = None
    action: Literal["allow", "deny"] = "allow"
    from_: Annotated[tuple[Principal, ...] | None, MinLength(1)] = field(
        default=None, metadata={ALIAS: "from"}
    )
    methods: Annotated[tuple[Method, ...] | None, MinLength(1)] = None
    paths: Annotated[tuple[PathGlob, ...] | None, MinLength(1)] = None
    routes: Annotated[tuple[Name, ...] | None, MinLength(1)] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Authorization:
    """Inbound authorization of `service` (or of every service when `service` is omitted)."""

    kind: Literal["Authorization"]
    name: Name | None = None
    service: ServiceName | None = None
    mode: AuthzMode = "enforce"
    default: AuthzDefault | None = None
    rules: tuple[AuthorizationRule, ...] = ()

    def __post_init__(self) -> None:
        if self.service is None and any(rule.routes for rule in self.rules):
            raise ValueError("rules with routes need the Authorization to name a service")


Document = HTTPRoute | ServicePolicy | Mirror | Authorization
DOCUMENT_KINDS: dict[str, type[Document]] = {
    "HTTPRoute": HTTPRoute,
    "ServicePolicy": ServicePolicy,
    "Mirror": Mirror,
    "Authorization": Authorization,
}
