"""The policy documents: one strict, frozen pydantic model per `kind:`.

The YAML shapes are the contract of DESIGN.md (after the Gateway API and
Linkerd's policy resources). Everything is validated strictly: unknown fields
are errors, numbers are not read from strings, durations need a unit, and
regular expressions and identity globs are compiled here, at load time, so a
broken pattern is a load error and never a request-time surprise.
"""

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    Tag,
    model_validator,
)

from identity import spiffe
from vm_mesh.durations import format_duration, parse_duration

# Bodies up to this size are buffered so that a request can be retried or mirrored.
MAX_REPLAY_BODY = 64 * 1024

_METHOD = re.compile(r"^[A-Z][A-Z0-9_-]{0,31}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")


class _Strict(BaseModel):
    # validators are built when the first document is validated: a proxy without policy
    # documents never pays for them
    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, populate_by_name=False, defer_build=True
    )


def _check_service(value: str) -> str:
    return spiffe.check_name(value, "service name")


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
    if not value.startswith("/"):
        raise ValueError(f"path {value!r} must start with '/'")
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


def _parse_principal(value: Any) -> Glob:
    glob = Glob.parse(value)
    if not glob.text.startswith("spiffe://"):
        raise ValueError(f"client identity {glob.text!r} must be a spiffe:// ID or pattern")
    return glob


def _parse_path_glob(value: Any) -> Glob:
    glob = Glob.parse(value)
    _check_absolute_path(glob.text)
    return glob


def _list_to_tuple(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(value)
    raise ValueError(f"expected a list, like [{value}]" if isinstance(value, str | int)
                     else f"expected a list, not {value!r}")


# YAML gives lists; the models keep tuples so that a loaded policy is immutable.
_T = TypeVar("_T")
Seq = Annotated[tuple[_T, ...], BeforeValidator(_list_to_tuple)]

ServiceName = Annotated[str, AfterValidator(_check_service)]
Name = Annotated[str, AfterValidator(_check_name)]
Method = Annotated[str, AfterValidator(_check_method)]
HeaderName = Annotated[str, AfterValidator(_check_header_name)]
AbsolutePath = Annotated[str, AfterValidator(_check_absolute_path)]
Duration = Annotated[
    float,
    PlainValidator(parse_duration),
    PlainSerializer(format_duration),
    Field(gt=0),
]
Regex = Annotated[
    re.Pattern[str], PlainValidator(_compile_regex), PlainSerializer(lambda p: p.pattern)
]
Principal = Annotated[Glob, PlainValidator(_parse_principal), PlainSerializer(str)]
PathGlob = Annotated[Glob, PlainValidator(_parse_path_glob), PlainSerializer(str)]
Port = Annotated[int, Field(ge=1, le=65535)]
Fraction = Annotated[float, Field(ge=0, le=1)]


# --- HTTPRoute -------------------------------------------------------------


class PathMatch(_Strict):
    """Exactly one of: exact path, path prefix (on `/` boundaries), or full-match regex."""

    exact: AbsolutePath | None = None
    prefix: AbsolutePath | None = None
    regex: Regex | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "PathMatch":
        given = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a path match needs exactly one of exact, prefix or regex")
        return self


class RegexMatch(_Strict):
    """A header or query value matched by a full-match regular expression."""

    regex: Regex


ValueMatch = Annotated[
    Annotated[str, Tag("Exact")] | Annotated[RegexMatch, Tag("Regex")],
    Discriminator(lambda value: "Exact" if isinstance(value, str) else "Regex"),
]


class RouteMatch(_Strict):
    """All conditions of one match must hold; an empty match matches every request."""

    path: PathMatch | None = None
    method: Method | None = None
    headers: dict[HeaderName, ValueMatch] = Field(default_factory=dict)
    query: dict[str, ValueMatch] = Field(default_factory=dict)


class Backend(_Strict):
    service: ServiceName
    weight: int = Field(default=1, ge=0, le=100_000)


class Timeouts(_Strict):
    """`request` bounds the whole request including retries; `per_try` bounds each attempt."""

    request: Duration | None = None
    per_try: Duration | None = None


class RetryBackoff(_Strict):
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


RetryCondition = Annotated[str | int, PlainValidator(_parse_retry_condition)]


class Retry(_Strict):
    """Opt-in retries of one route: on what, how many, for which methods."""

    on: Seq[RetryCondition] = Field(min_length=1)
    attempts: int = Field(default=2, ge=1, le=10)
    methods: Seq[Method] | None = None
    backoff: RetryBackoff = RetryBackoff()


class RouteRule(_Strict):
    """One rule: first rule whose matches hold decides backends, timeouts and retries."""

    name: Name | None = None
    matches: Seq[RouteMatch] = ()
    backends: Seq[Backend] = ()
    timeout: Timeouts | None = None
    retry: Retry | None = None

    @model_validator(mode="after")
    def _some_weight(self) -> "RouteRule":
        if self.backends and not any(b.weight for b in self.backends):
            raise ValueError("at least one backend needs a weight above 0")
        return self


class HTTPRoute(_Strict):
    kind: Literal["HTTPRoute"]
    name: Name
    service: ServiceName
    rules: Seq[RouteRule] = Field(min_length=1)


# --- ServicePolicy ---------------------------------------------------------


class RetryBudget(_Strict):
    """Retries allowed: `ratio` of live requests plus `min_per_second`, over `window`."""

    ratio: Fraction = 0.2
    min_per_second: float = Field(default=10.0, ge=0)
    window: Duration = 10.0


class BreakerBackoff(_Strict):
    min: Duration = 1.0
    max: Duration = 60.0
    jitter: Fraction = 0.5

    @model_validator(mode="after")
    def _ordered(self) -> "BreakerBackoff":
        if self.max < self.min:
            raise ValueError("backoff max must not be below min")
        return self


class CircuitBreaker(_Strict):
    consecutive_failures: int = Field(default=7, ge=1, le=10_000)
    backoff: BreakerBackoff = BreakerBackoff()


class ServicePolicy(_Strict):
    """Defaults for one destination service.

    `opaque_ports`: ports on which connections to the service are never inspected (a
    per-upstream TCP listener on one of them relays at once); `detect_timeout`: how long
    such a listener waits for an HTTP request line before relaying as opaque TCP.
    """

    kind: Literal["ServicePolicy"]
    name: Name | None = None
    service: ServiceName
    timeout: Timeouts | None = None
    retry_budget: RetryBudget = RetryBudget()
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    opaque_ports: Seq[Port] = ()
    detect_timeout: Duration | None = None


# --- Mirror ----------------------------------------------------------------


class Mirror(_Strict):
    """Copy `percent` of the requests to `service` to the shadow service `to`."""

    kind: Literal["Mirror"]
    name: Name | None = None
    service: ServiceName
    to: ServiceName
    percent: float = Field(gt=0, le=100)

    @model_validator(mode="after")
    def _not_itself(self) -> "Mirror":
        if self.to == self.service:
            raise ValueError("a service cannot mirror to itself")
        return self


# --- Authorization ---------------------------------------------------------

AuthzMode = Literal["enforce", "audit"]
AuthzDefault = Literal["deny", "allow-mesh", "allow-all"]


class AuthorizationRule(_Strict):
    """Who may call: every given condition must hold; an omitted one holds for any request."""

    name: Name | None = None
    action: Literal["allow", "deny"] = "allow"
    from_: Seq[Principal] | None = Field(default=None, alias="from", min_length=1)
    methods: Seq[Method] | None = Field(default=None, min_length=1)
    paths: Seq[PathGlob] | None = Field(default=None, min_length=1)
    routes: Seq[Name] | None = Field(default=None, min_length=1)


class Authorization(_Strict):
    """Inbound authorization of `service` (or of every service when `service` is omitted)."""

    kind: Literal["Authorization"]
    name: Name | None = None
    service: ServiceName | None = None
    mode: AuthzMode = "enforce"
    default: AuthzDefault | None = None
    rules: Seq[AuthorizationRule] = ()

    @model_validator(mode="after")
    def _routes_need_service(self) -> "Authorization":
        if self.service is None and any(rule.routes for rule in self.rules):
            raise ValueError("rules with routes need the Authorization to name a service")
        return self


Document = HTTPRoute | ServicePolicy | Mirror | Authorization
DOCUMENT_KINDS: dict[str, type[Document]] = {
    "HTTPRoute": HTTPRoute,
    "ServicePolicy": ServicePolicy,
    "Mirror": Mirror,
    "Authorization": Authorization,
}
