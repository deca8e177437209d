"""`vmesh join`: onboard this host's service in one command.

Fetch the first certificate with the join token (the token pins the CA, so a
wrong `--identity` URL is caught before anything is sent), then write the
service file that names the identity service for renewals. The certificate
comes first so a refused token leaves nothing behind.
"""

import asyncio
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import ValidationError

from identity.client import IdentityRefused, obtain
from identity.errors import Rejection
from identity.pki import write_file
from vm_mesh import paths
from vm_mesh.config import ServiceConfig
from vm_mesh.errors import UserError


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """What `vmesh join` was asked to do."""

    token: str
    identity_url: str
    service: str
    app_port: int
    host: str
    discovery: str = "mdns"
    consul_url: str | None = None
    inbound: str | None = None
    outbound: str | None = None
    admin: str | None = None


def service_file_text(request: JoinRequest) -> str:
    """The service file `vmesh join` writes (TOML; strings quoted as JSON, which TOML accepts)."""
    lines = [
        f"service = {json.dumps(request.service)}",
        f"app_port = {request.app_port}",
        f"identity_url = {json.dumps(request.identity_url)}",
    ]
    listen = {k: v for k, v in (("inbound", request.inbound), ("outbound", request.outbound),
                                ("admin", request.admin)) if v}
    if listen:
        lines += ["", "[listen]", *(f"{k} = {json.dumps(v)}" for k, v in listen.items())]
    lines += ["", "[discovery]", f"backend = {json.dumps(request.discovery)}"]
    if request.consul_url:
        lines.append(f"consul_url = {json.dumps(request.consul_url)}")
    return "\n".join(lines) + "\n"


def join(request: JoinRequest, force: bool = False) -> Path:
    """Obtain the first certificate and write the service file; returns the file's path."""
    text = service_file_text(request)
    try:  # a bad --service or address fails here, before anything is sent or written
        ServiceConfig.model_validate(tomllib.loads(text))
    except ValidationError as exc:
        error = exc.errors()[0]
        raise UserError(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}") from None
    config_path = paths.service_config(request.service)
    if config_path.exists() and not force:
        raise UserError(f"{config_path} already exists; this service has joined "
                        "(start it with `vmesh proxy run`, or pass --force to join again)")
    url = request.identity_url
    try:
        asyncio.run(obtain(url, request.token, host=request.host, service=request.service,
                           directory=paths.state_dir(request.service)))
    except Rejection as exc:
        raise UserError(f"--token: {exc.reason}: {exc.detail}") from None
    except IdentityRefused as exc:
        raise UserError(f"the identity service at {url} refused the join: "
                        f"{exc.reason}: {exc.detail}") from None
    except (httpx.HTTPError, OSError) as exc:
        raise UserError(f"cannot reach the identity service at {url} "
                        f"({type(exc).__name__}: {exc or 'no answer'}); check --identity "
                        "and that `vmesh identity serve` runs there") from None
    write_file(config_path, text.encode())
    return config_path
