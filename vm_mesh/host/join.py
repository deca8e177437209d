"""`vmesh join`: onboard a host's service in one command.

Writes the service file, exchanges the one-time token for the first
certificate (the identity service is authenticated by the anchor pin the
token carries), then starts the proxy: `systemctl enable --now
vmesh-proxy@<service>` where systemd runs, the proxy in the foreground
otherwise.
"""

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from vm_mesh import paths
from vm_mesh.config import ServiceConfig
from vm_mesh.errors import UserError


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """What the operator asked for on the command line."""

    service: str
    app_port: int
    identity_url: str
    instance_id: str = ""
    advertise: str | None = None
    inbound: str | None = None
    outbound: str | None = None
    admin: str | None = None
    discovery: str = "mdns"
    consul_url: str | None = None


def _quote(value: str) -> str:
    """A TOML basic string: JSON's escapes (\\n, \\", \\uXXXX) are TOML's too."""
    return json.dumps(value, ensure_ascii=True)


def service_file(request: JoinRequest) -> str:
    """The TOML of the service file `join` writes; UserError when the values are invalid."""
    lines = [
        f"service = {_quote(request.service)}",
        f"app_port = {request.app_port}",
        f"identity_url = {_quote(request.identity_url)}",
    ]
    if request.instance_id:
        lines.append(f"instance_id = {_quote(request.instance_id)}")
    listen = [
        f"{key} = {_quote(value)}"
        for key, value in (("inbound", request.inbound), ("outbound", request.outbound),
                           ("admin", request.admin), ("advertise", request.advertise))
        if value
    ]
    if listen:
        lines += ["", "[listen]", *listen]
    lines += ["", "[discovery]", f"backend = {_quote(request.discovery)}"]
    if request.consul_url:
        lines.append(f"consul_url = {_quote(request.consul_url)}")
    text = "\n".join(lines) + "\n"
    try:
        ServiceConfig.model_validate(tomllib.loads(text))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "service file"
        raise UserError(f"vmesh join: {where}: {first['msg']}") from None
    return text


def write_service_file(request: JoinRequest) -> Path:
    """Write the service file; an existing different file is left alone and reported."""
    from identity.pki import write_file

    text = service_file(request)
    path = paths.service_config(request.service)
    if path.exists() and path.read_text() != text:
        raise UserError(f"{path} exists with other settings; edit it or remove it, then join again")
    write_file(path, text.encode())
    return path
