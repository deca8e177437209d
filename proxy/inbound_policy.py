"""Inbound authorization as the proxy applies it, before the application sees a byte.

HTTP requests are checked after their head is parsed and normalized; opaque
TCP connections right after the TLS handshake (method and path unknown, so
only rules without method/path conditions can admit them, and a deny rule with
them refuses its callers). A denial becomes
403 with the reason (HTTP) or a closed connection (TCP); an audit decision
lets the request through and is logged and tapped as the would-be denial.
"""

import json
import logging
from collections.abc import Callable

from proxy.authz import AuthzDecision, AuthzRequest
from proxy.events import RequestEvent
from proxy.normalize import Target
from proxy.route import HeaderPairs, RequestFacts
from proxy.traffic import TrafficPolicy
from vm_mesh.defaults import ERROR_HEADER

log = logging.getLogger("vmesh.proxy.authz")


class InboundAuthorization:
    """Authorizes callers of one local service against the policy currently in force."""

    def __init__(self, service: str, traffic: Callable[[], TrafficPolicy]) -> None:
        self.service = service
        self._traffic = traffic

    def check_http(
        self,
        peer_id: str | None,
        method: str,
        target: Target,
        headers: HeaderPairs = (),
    ) -> AuthzDecision:
        """Decide for one HTTP request (`target` already normalized)."""
        traffic = self._traffic()
        authorizer = traffic.authorizer(self.service)
        if authorizer.caller_decides:
            decision = authorizer.decide_for_caller(peer_id)
            if decision.verdict == "allow":
                return decision  # otherwise decided again below, for the log to name the request
        route = None
        if authorizer.needs_route:
            facts = RequestFacts.build(method, target.path, target.query, headers)
            route = traffic.service(self.service).routes.match(facts).route_name
        request = AuthzRequest(peer_id, method, target.path, route)
        return self._log(authorizer.decide(request), request)

    def check_tcp(self, peer_id: str | None) -> AuthzDecision:
        """Decide for one opaque TCP connection."""
        request = AuthzRequest(peer_id, None, None, None)
        return self._log(self._traffic().authorizer(self.service).decide(request), request)

    def _log(self, decision: AuthzDecision, request: AuthzRequest) -> AuthzDecision:
        if decision.verdict != "allow":
            denied = decision.verdict == "deny"
            log.warning(
                "request denied" if denied else "audit: request would be denied",
                extra={
                    "event": f"authz_{decision.verdict}",
                    "dst_service": self.service,
                    "client_id": request.peer_id,
                    "method": request.method,
                    "path": request.path,
                    "rule": decision.rule,
                    "reason": decision.reason,
                },
            )
        return decision


def annotate(event: RequestEvent, decision: AuthzDecision) -> None:
    """Record the decision in the request event (tap `policy`, metrics, access log)."""
    event.policy_decision = decision.verdict
    event.policy_rule = decision.rule
    event.authz_reason = decision.reason
    if decision.verdict == "deny":
        event.error = decision.reason


def forbidden_response(decision: AuthzDecision) -> tuple[int, list[tuple[str, str]], bytes]:
    """The 403 a denied caller gets: status, headers and a JSON body naming reason and rule."""
    body = json.dumps({"error": "forbidden", "reason": decision.reason, "rule": decision.rule})
    data = body.encode() + b"\n"
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(data))),
        (ERROR_HEADER, decision.reason),
        ("connection", "close"),
    ]
    return 403, headers, data
