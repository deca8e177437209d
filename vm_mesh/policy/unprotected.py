"""Authorization documents that protect nothing on this host, found for a warning.

An Authorization is enforced by the proxy of the service it names. One that names a
service no service file of the host is for (`/etc/vmesh/services/<service>.toml`), a
misspelling most often, loads and is never applied here: the proxy's log and `vmesh
check` say so, with its file and line. Documents from Consul KV are left out: they are
the whole mesh's, and name the services of every host.
"""

import difflib
from collections.abc import Collection

from vm_mesh.policy.files import CONSUL_PREFIX, PolicyError
from vm_mesh.policy.model import Authorization
from vm_mesh.policy.policyset import PolicySet

UNKNOWN_SERVICE = "policy.unknown_service"


def unknown_services(policy: PolicySet, services: Collection[str]) -> list[PolicyError]:
    """A warning for each host-file Authorization whose service is none of `services`."""
    warnings = []
    for item in policy.documents:
        doc, source = item.doc, item.source
        if (not isinstance(doc, Authorization) or doc.service is None
                or doc.service in services or source.file.startswith(CONSUL_PREFIX)):
            continue
        close = difflib.get_close_matches(doc.service, list(services), n=1)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        warnings.append(PolicyError(
            source.file,
            source.line,
            f"Authorization {doc.name or doc.service}: no service file of this host is for "
            f"service {doc.service!r}{guess}, so it protects nothing here",
            UNKNOWN_SERVICE,
        ))
    return warnings
