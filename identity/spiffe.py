"""SPIFFE IDs as vmesh uses them: `spiffe://<trust-domain>/<kind>/<name>` (pure).

Reading them out of certificates is done where certificates are handled: `identity.pki`
for `cryptography` objects, `proxy.certinfo` for the ones the stdlib's `ssl` decodes.
"""

import re
from dataclasses import dataclass

KINDS = ("svc", "operator", "host")

_TRUST_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?$")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """A workload identity: trust domain, kind (svc, operator, host) and name."""

    trust_domain: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}/{self.kind}/{self.name}"


def check_trust_domain(trust_domain: str) -> str:
    """Return `trust_domain` if it is a valid SPIFFE trust domain name, else raise ValueError."""
    if not _TRUST_DOMAIN.match(trust_domain):
        raise ValueError(
            f"invalid trust domain {trust_domain!r}: use lowercase letters, digits, '.' and '-'"
        )
    return trust_domain


def check_name(name: str, what: str = "name") -> str:
    """Return `name` if it can be the last segment of a vmesh SPIFFE ID, else raise ValueError."""
    if not _NAME.match(name):
        raise ValueError(
            f"invalid {what} {name!r}: use 1-63 lowercase letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return name


def make(trust_domain: str, kind: str, name: str) -> SpiffeId:
    """Build a validated SPIFFE ID."""
    if kind not in KINDS:
        raise ValueError(f"invalid identity kind {kind!r}: expected one of {', '.join(KINDS)}")
    return SpiffeId(check_trust_domain(trust_domain), kind, check_name(name, f"{kind} name"))


def parse(uri: str) -> SpiffeId:
    """Parse a vmesh SPIFFE ID, raising ValueError with the reason when it is not one."""
    prefix = "spiffe://"
    if not uri.startswith(prefix):
        raise ValueError(f"not a SPIFFE ID (scheme must be spiffe): {uri!r}")
    trust_domain, _, path = uri[len(prefix) :].partition("/")
    segments = path.split("/") if path else []
    if len(segments) != 2:
        raise ValueError(f"SPIFFE ID {uri!r} must have the form spiffe://<td>/<kind>/<name>")
    return make(trust_domain, segments[0], segments[1])


def of_uri_sans(uris: list[str]) -> SpiffeId:
    """The identity of a leaf from its URI SANs: exactly one (X.509-SVID rule), else ValueError."""
    if len(uris) != 1:
        raise ValueError(f"certificate must carry exactly one URI SAN, found {len(uris)}")
    return parse(uris[0])
