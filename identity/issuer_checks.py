"""Whether the issuers a CA still trusts carry the name constraint to its trust domain:
judged once, for `vmesh check` and `vmesh identity status` alike."""

from __future__ import annotations

from collections.abc import Iterable

from identity import pki
from identity.castate import Generation
from vm_mesh.findings import Finding, Status


def check_issuer_constraint(generation: int, active: bool, constrained: bool,
                            trust_domain: str) -> Finding:
    """The issuer of a trusted generation of the CA on this host: name-constrained to its
    trust domain, or (a CA made before vmesh set the constraint) not, so that its key, if
    stolen, could sign identities of another trust domain for a relying party trusting both."""
    target = f"issuer of CA generation {generation}"
    if constrained:
        return Finding("identity", Status.OK, target,
                       f"name-constrained to spiffe://{trust_domain}",
                       "identity.issuer_constrained")
    if active:
        hint = ("run `vmesh identity rotate` (its new issuer carries the constraint), restart "
                "the identity service once every proxy has the new bundle "
                "(`ansible/rotate-certs.yml` takes every host through it), then "
                f"`vmesh identity retire {generation}` once every leaf has renewed")
    else:
        hint = (f"run `vmesh identity retire {generation}` once every leaf has renewed from a "
                "newer generation (a leaf lifetime after the identity service signs with it)")
    return Finding("identity", Status.WARN, target,
                   f"lacks the name constraint to spiffe://{trust_domain} (made before vmesh "
                   "set it): its key could sign identities of other trust domains",
                   "identity.issuer_unconstrained", hint)


def check_issuer_constraints(trust_domain: str, active: int,
                             generations: Iterable[Generation]) -> list[Finding]:
    """`check_issuer_constraint` of every trusted generation of a CA (what `vmesh check` and
    `vmesh identity status` say on the CA host)."""
    return [check_issuer_constraint(g.number, g.number == active,
                                    pki.is_constrained_to(g.issuer, trust_domain), trust_domain)
            for g in generations if not g.retired]
