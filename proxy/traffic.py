"""The policy of each destination service, compiled for the request path.

`TrafficPolicy` is rebuilt on every policy reload; it carries the retry
budgets (live counters) over to the new generation, so a reload during an
outage cannot reset the budget and let a retry storm through.
"""

import random
from dataclasses import dataclass

from proxy.authz import Authorizer
from proxy.mirror import MirrorSampler
from proxy.retry import RetryBudget, RetryPolicy
from proxy.route import RequestFacts, RouteTable, RouteTarget
from proxy.split import WeightedSplit
from vm_mesh.policy.model import CircuitBreaker, ServicePolicy
from vm_mesh.policy.policyset import PolicySet

DEFAULT_SERVICE_POLICY = ServicePolicy(kind="ServicePolicy", service="default")


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """What the layers below routing need for one request."""

    target: RouteTarget
    split: WeightedSplit
    retry: RetryPolicy | None

    # the backend of a route that neither retries, splits nor bounds each try: its requests go
    # straight to it within the request timeout, around the retry layer (else None)
    only_backend: str | None


def _plan(target: RouteTarget, rng: random.Random) -> RoutePlan:
    split = WeightedSplit(target.backends, rng)
    retry = RetryPolicy(target.retry) if target.retry else None
    direct = retry is None and target.timeouts.per_try is None and len(split.backends) == 1
    return RoutePlan(target, split, retry, split.backends[0].service if direct else None)


class ServiceTraffic:
    """Routes, splits, retry policies, budget and mirrors of one destination service."""

    def __init__(
        self, service: str, policy: PolicySet, budget: RetryBudget | None, rng: random.Random
    ) -> None:
        self.service = service
        sourced = policy.service_policy(service)
        self.settings = sourced.doc if sourced else DEFAULT_SERVICE_POLICY
        self.routes = RouteTable(service, policy)
        self._plans = {target.route: _plan(target, rng) for target in self.routes.targets()}
        spec = self.settings.retry_budget
        if budget is None or (budget.ratio, budget.reserve, budget.window) != (
            spec.ratio,
            spec.min_per_second * spec.window,
            spec.window,
        ):
            budget = RetryBudget.from_spec(spec)
        self.budget = budget
        self.mirrors = MirrorSampler.from_policy(policy.mirrors_for(service), rng)

    @property
    def circuit_breaker(self) -> CircuitBreaker:
        return self.settings.circuit_breaker

    @property
    def failover(self) -> tuple[str, ...]:
        """Where its requests go, in order, while it has no available instance."""
        return self.settings.failover

    def plan(self, facts: RequestFacts) -> RoutePlan:
        return self._plans[self.routes.match(facts).route]

    def __repr__(self) -> str:
        return f"<ServiceTraffic {self.service} routes={len(self._plans)} {self.budget!r}>"


class TrafficPolicy:
    """Per-service compiled policy for one PolicySet generation (built lazily per service)."""

    def __init__(
        self,
        policy: PolicySet,
        trust_domain: str,
        previous: "TrafficPolicy | None" = None,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.trust_domain = trust_domain
        self._rng = rng or random.Random()
        self._budgets: dict[str, RetryBudget] = dict(previous._budgets) if previous else {}
        self._services: dict[str, ServiceTraffic] = {}
        self._authorizers: dict[str, Authorizer] = {}

    def service(self, name: str) -> ServiceTraffic:
        traffic = self._services.get(name)
        if traffic is None:
            traffic = ServiceTraffic(name, self.policy, self._budgets.get(name), self._rng)
            self._budgets[name] = traffic.budget
            self._services[name] = traffic
        return traffic

    def forget(self, name: str) -> None:
        """Drop what was compiled and counted for `name` (no longer routed to)."""
        self._services.pop(name, None)
        self._budgets.pop(name, None)

    def authorizer(self, service: str) -> Authorizer:
        authorizer = self._authorizers.get(service)
        if authorizer is None:
            authorizer = Authorizer(service, self.policy, self.trust_domain)
            self._authorizers[service] = authorizer
        return authorizer

    def reloaded(self, policy: PolicySet) -> "TrafficPolicy":
        """The compiled form of a new policy generation, keeping live retry budgets."""
        return TrafficPolicy(policy, self.trust_domain, previous=self, rng=self._rng)
