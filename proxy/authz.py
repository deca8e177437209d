"""Inbound authorization: may this caller make this request to this service?

Evaluation (the Istio order, which fails closed):
  1. any matching `deny` rule denies;
  2. else any matching `allow` rule allows;
  3. else the default decides: the strictest default among the service's own
     Authorization documents, else the strictest among mesh-wide ones (no
     `service`), else `allow-mesh`. `allow-mesh` admits callers with an
     identity in our trust domain; `allow-all` admits anyone, even
     unauthenticated callers.
An opaque TCP connection has no method, path or route: an allow rule with such
conditions never admits it, and a deny rule with them refuses it when its
other conditions (`from`) hold, since its bytes may carry the denied request.
Rules of mesh-wide documents apply to every service. Audit mode never changes
what is enforced: the decision is taken with the `enforce` documents alone,
and if it allows but the full set (audit documents included) would deny, the
request goes through as an `audit` decision naming the rule that would have
denied it. Paths are matched on the normalized path the proxy forwards.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

from vm_mesh.policy.model import Authorization, AuthorizationRule, AuthzDefault
from vm_mesh.policy.policyset import PolicySet, Source, Sourced

Verdict = Literal["allow", "deny", "audit"]

# Stable reason strings (logs, metrics, tap, the 403 body).
ALLOWED_BY_RULE = "authz.allowed_by_rule"
ALLOWED_BY_DEFAULT = "authz.allowed_by_default"
DENIED_BY_RULE = "authz.denied_by_rule"
DEFAULT_DENY = "authz.default_deny"
UNAUTHENTICATED = "authz.unauthenticated"
FOREIGN_TRUST_DOMAIN = "authz.foreign_trust_domain"

BUILTIN_DEFAULT: AuthzDefault = "allow-mesh"
BUILTIN_RULE = "builtin.default"
_STRICTNESS = {"deny": 0, "allow-mesh": 1, "allow-all": 2}


class AuthzRequest:
    """What authorization looks at. `peer_id` is None for an unauthenticated caller; `method`
    is None for an opaque TCP connection, which has no method, path or route.

    (Not a dataclass: with rules on paths or methods one is made per request, and mypyc
    compiles this `__init__`.)
    """

    __slots__ = ("method", "path", "peer_id", "route")

    def __init__(
        self, peer_id: str | None, method: str | None, path: str | None, route: str | None = None
    ) -> None:
        self.peer_id: Final = peer_id
        self.method: Final = method
        self.path: Final = path
        self.route: Final = route


@dataclass(frozen=True, slots=True)
class AuthzDecision:
    """The outcome, the rule that decided it, and a stable reason string."""

    verdict: Verdict
    rule: str
    reason: str

    @property
    def allowed(self) -> bool:
        return self.verdict != "deny"


# Decisions are immutable and few (verdict x rule x reason): each request shares one instead
# of building two. Bounded, because a policy reload can bring new rule names.
_decision = lru_cache(maxsize=4096)(AuthzDecision)

MAX_CALLERS_KEPT = 4096  # decisions kept per caller, when only the caller matters


@dataclass(frozen=True, slots=True)
class _Rule:
    id: str
    spec: AuthorizationRule
    # on an opaque connection, whose bytes may carry any request: an allow rule with
    # conditions on requests never holds, a deny rule holds by its other conditions (Istio)
    holds_when_opaque: bool

    def matches(self, request: AuthzRequest) -> bool:
        spec = self.spec
        if spec.from_ is not None and (
            request.peer_id is None or not any(p.matches(request.peer_id) for p in spec.from_)
        ):
            return False
        if request.method is None:
            return self.holds_when_opaque
        if spec.methods is not None and request.method not in spec.methods:
            return False
        if spec.paths is not None and (
            request.path is None or not any(p.matches(request.path) for p in spec.paths)
        ):
            return False
        return spec.routes is None or request.route in spec.routes


@dataclass(frozen=True, slots=True)
class _Gate:
    """A set of documents evaluated together."""

    deny: tuple[_Rule, ...]
    allow: tuple[_Rule, ...]
    default: AuthzDefault
    default_rule: str


Labels = dict[Source, str]  # each document's label, which its rules' and default's begin with


def _labels(docs: Sequence[Sourced[Authorization]]) -> Labels:
    """Each document's label: its name, else its service (`mesh` for a mesh-wide one); where
    two documents would share one, each of them with its file and line (`store@b.yaml:4`),
    so that tap and metrics tell their rules apart."""
    plain = [d.doc.name or d.doc.service or "mesh" for d in docs]
    shared = {label for label in plain if plain.count(label) > 1}
    return {
        d.source: (f"{label}@{d.source.file.rsplit('/', 1)[-1]}:{d.source.line}"
                   if label in shared else label)
        for label, d in zip(plain, docs, strict=True)
    }


def _looks_at_requests(rule: AuthorizationRule) -> bool:
    return rule.methods is not None or rule.paths is not None or rule.routes is not None


def _rules(docs: Sequence[Sourced[Authorization]], action: str, labels: Labels
           ) -> tuple[_Rule, ...]:
    return tuple(
        _Rule(
            f"{labels[d.source]}.{rule.name or f'rules[{i}]'}",
            rule,
            action == "deny" or not _looks_at_requests(rule),
        )
        for d in docs
        for i, rule in enumerate(d.doc.rules)
        if rule.action == action
    )


def _strictest(docs: Sequence[Sourced[Authorization]], labels: Labels
               ) -> tuple[AuthzDefault, str] | None:
    defaults = [(d.doc.default, f"{labels[d.source]}.default") for d in docs if d.doc.default]
    if not defaults:
        return None
    return min(defaults, key=lambda pair: _STRICTNESS[pair[0]])


def _gate(
    service_docs: Sequence[Sourced[Authorization]],
    mesh_docs: Sequence[Sourced[Authorization]],
    labels: Labels,
) -> _Gate:
    docs = [*service_docs, *mesh_docs]
    default = (_strictest(service_docs, labels) or _strictest(mesh_docs, labels)
               or (BUILTIN_DEFAULT, BUILTIN_RULE))
    return _Gate(_rules(docs, "deny", labels), _rules(docs, "allow", labels), default[0],
                 default[1])


class Authorizer:
    """The compiled authorization of one destination service."""

    def __init__(self, service: str, policy: PolicySet, trust_domain: str) -> None:
        self.service = service
        self._mesh_prefix = f"spiffe://{trust_domain}/"
        own = policy.authorizations_for(service)
        mesh = policy.mesh_authorizations()
        labels = _labels([*own, *mesh])  # the same in both gates
        self._full = _gate(own, mesh, labels)
        self._enforced = _gate(
            [d for d in own if d.doc.mode == "enforce"],
            [d for d in mesh if d.doc.mode == "enforce"],
            labels,
        )
        specs = [rule.spec for rule in (*self._full.deny, *self._full.allow)]
        self.needs_route = any(spec.routes is not None for spec in specs)
        # no rule looks past the caller (the built-in default, or rules naming only `from`):
        # every request of a caller gets the same decision, kept after the first
        self.caller_decides = not any(_looks_at_requests(spec) for spec in specs)
        self._by_caller: dict[str | None, AuthzDecision] = {}

    def decide_for_caller(self, peer_id: str | None) -> AuthzDecision:
        """The decision for every request of `peer_id`; only when `caller_decides`."""
        decision = self._by_caller.get(peer_id)
        if decision is None:
            decision = self.decide(AuthzRequest(peer_id, None, None, None))
            if len(self._by_caller) < MAX_CALLERS_KEPT:
                self._by_caller[peer_id] = decision
        return decision

    def decide(self, request: AuthzRequest) -> AuthzDecision:
        enforced = self._evaluate(self._enforced, request)
        if enforced.verdict == "deny":
            return enforced
        full = self._evaluate(self._full, request)
        if full.verdict == "deny":
            return _decision("audit", full.rule, full.reason)
        return full

    def _evaluate(self, gate: _Gate, request: AuthzRequest) -> AuthzDecision:
        for rule in gate.deny:
            if rule.matches(request):
                return _decision("deny", rule.id, DENIED_BY_RULE)
        for rule in gate.allow:
            if rule.matches(request):
                return _decision("allow", rule.id, ALLOWED_BY_RULE)
        if gate.default == "allow-all":
            return _decision("allow", gate.default_rule, ALLOWED_BY_DEFAULT)
        if gate.default == "deny":
            return _decision("deny", gate.default_rule, DEFAULT_DENY)
        if request.peer_id is None:
            return _decision("deny", gate.default_rule, UNAUTHENTICATED)
        if not request.peer_id.startswith(self._mesh_prefix):
            return _decision("deny", gate.default_rule, FOREIGN_TRUST_DOMAIN)
        return _decision("allow", gate.default_rule, ALLOWED_BY_DEFAULT)

    def __repr__(self) -> str:
        return (
            f"<Authorizer {self.service} allow={len(self._full.allow)} "
            f"deny={len(self._full.deny)} default={self._enforced.default}>"
        )
