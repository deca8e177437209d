"""Names of services in other sites: `api.east` is the service `api` of Consul datacenter `east`.

An app asks for `api.east.mesh` (Host or absolute-form URL): the service first
and its datacenter after it, as Consul's own DNS names do
(`api.service.east.consul`). The proxy routes to it under the name `api.east`,
which its policy, metrics, tap and `/v1/endpoints` use as well; the instances'
certificates name `spiffe://<td>/svc/api`, as every instance of `api` does. A
name without `.mesh` is never taken for another site's: with a dot it is an
ordinary DNS name, which the outbound proxy refuses.

Service names are those of service files (vm_mesh.config); datacenter names
are those Consul accepts: lowercase letters, digits, `-` and `_`.
"""

import re

_SERVICE = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DATACENTER = r"[a-z0-9_-]{1,63}"
_HOST = re.compile(rf"({_SERVICE}\.{_DATACENTER})\.mesh")
_SITE_NAME = re.compile(rf"{_SERVICE}\.{_DATACENTER}")
_DATACENTER_NAME = re.compile(_DATACENTER)


def from_host(host: str) -> str | None:
    """The name `api.east` of a lowercase host `api.east.mesh`; None for any other host."""
    found = _HOST.fullmatch(host)
    return found.group(1) if found else None


def split(name: str) -> tuple[str, str | None]:
    """(`api`, `east`) for `api.east`; (`api`, None) for a service of this site."""
    service, dot, datacenter = name.partition(".")
    return service, (datacenter if dot else None)


def check_datacenter(name: str) -> str:
    """`name` if Consul could name a datacenter so, else ValueError."""
    if not _DATACENTER_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a datacenter name (lowercase letters, digits, "
                         "'-' and '_', as Consul allows)")
    return name


def check_destination(name: str) -> str:
    """`name` if it has no dot, or is `<service>.<datacenter>`; else ValueError."""
    if "." in name and not _SITE_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is neither a service name nor <service>.<datacenter> "
                         "(a service of another site, e.g. api.east)")
    return name


# The TLS server name a caller sends to another site's mesh gateway, which routes the
# connection by it without terminating TLS (proxy/gateway.py): `api.east.vmesh.local` is the
# service `api` of datacenter `east` in trust domain `vmesh.local`, as Consul's mesh gateways
# route `<service>.default.<dc>.internal.<trust domain>`.
GATEWAY_SERVICE = "vmesh-gateway"  # the Consul service mesh gateways register as
_GATEWAY_ROUTE = re.compile(rf"({_SERVICE})\.({_DATACENTER})")


def gateway_server_name(service: str, datacenter: str, trust_domain: str) -> str:
    """The server name that asks a gateway of `datacenter` for `service` of `trust_domain`."""
    return f"{service}.{datacenter}.{trust_domain}"


def gateway_route(server_name: str, trust_domain: str) -> tuple[str, str] | None:
    """(`api`, `east`) for `api.east.<trust_domain>`; None for any other name (another trust
    domain, a name that is no service and datacenter, the gateways' own service)."""
    route = server_name.lower().removesuffix(f".{trust_domain.lower()}")
    if route == server_name.lower():
        return None
    found = _GATEWAY_ROUTE.fullmatch(route)
    if found is None or found.group(1) == GATEWAY_SERVICE:
        return None
    return found.group(1), found.group(2)
