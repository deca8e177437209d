"""Requests from an app on a namespace host, through its own proxy's outbound listener."""

import json

from tests.e2e.lan import Host
from tests.integration.mesh import ProxyProcess, start_proxy_process, wait_until


def get(host: Host, proxy: ProxyProcess, service: str) -> tuple[int, dict]:
    """curl from `host`'s app side through its outbound listener: (status, JSON body). Status 0
    means curl gave up after 5 s."""
    result = host.run(["curl", "-sS", "-m", "5", "-w", "\n%{http_code}", "-H",
                       f"Host: {service}.mesh", f"http://127.0.0.1:{proxy.ports['outbound']}/hi"])
    body, _, status = result.stdout.rpartition("\n")
    try:
        payload = json.loads(body)
    except json.JSONDecodeError:
        payload = {"raw": body, "stderr": result.stderr}
    return int(status or 0), payload


def first_answer(host: Host, proxy: ProxyProcess, service: str, within: float = 10) -> dict:
    """The first 200 answer: a proxy watches a service from its first request on, so the first
    requests may find no instance yet."""
    answers: list[tuple[int, dict]] = []
    wait_until(lambda: answers.append(get(host, proxy, service)) or answers[-1][0] == 200,
               within=within, what=f"{proxy.service} reaching {service}")
    return answers[-1][1]


def start_service_proxy(host: Host, service: str, app_port: int,
                        instance_id: str, extra: str = "") -> ProxyProcess:
    """Write `service`'s file on `host` (inbound and admin on the host's address, which it
    announces; outbound on loopback; `extra`: tables after those, e.g. [[tcp]] listeners) and
    start its proxy there, stopped with the host's processes. The host's mesh.toml and the
    service's leaf must be in place."""
    address = host.address
    config = host.root / "etc/vmesh/services" / f"{service}.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'service = "{service}"\napp_port = {app_port}\ninstance_id = "{instance_id}"\n'
        f'[listen]\ninbound = "{address}:0"\noutbound = "127.0.0.1:0"\n'
        f'admin = "{address}:0"\nadvertise = "{address}"\n'
        '[timeouts]\nconnect = "500ms"\nheader = "2s"\nidle = "10s"\ndrain = "2s"\n'
        f"{extra}"
    )
    proxy = start_proxy_process(service, host.env, prefix=host.command([]))
    host.adopt(proxy.proc)
    return proxy
