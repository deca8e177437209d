"""`vmesh gateway run`: a mesh gateway process (proxy/gateway.py) with its admin API and its
registration in its site's Consul.

It reads `/etc/vmesh/gateway.toml` (vm_mesh.config.GatewayConfig) and mesh.toml
(trust domain, `[discovery]`, which must be Consul), listens on 4180, serves
the admin API's `/live`, `/ready`, `/metrics` and `/v1/endpoints` on the unix
socket `/run/vmesh/vmesh-gateway.sock`, and registers as `vmesh-gateway` with its `lan`
and `wan` tagged addresses and a TCP check of its port. SIGTERM or SIGINT deregisters,
stops accepting, lets open connections go on for `drain` seconds, then cuts them.

With `admin_port` in gateway.toml it also serves the admin API over mTLS on that port, as a
proxy does on 4191 (same audiences: any mesh identity reads `/metrics`, `/v1/stats`,
`/v1/endpoints`; no client certificate gets `/ready` and `/live` only), with a leaf of its
own (`svc/vmesh-gateway`, in its state directory, first obtained with `vmesh cert-helper
vmesh-gateway --once`) that it renews as a proxy does when mesh.toml names `identity_url`,
and reloads whenever the files change; `/metrics` gives its validity as a proxy's
(`identity_cert_expiration_timestamp_seconds`). The port is registered as the instance's `admin`
meta, so `vmesh targets` lists it for Prometheus. The data path still holds no key.

The port and the admin socket each hold at most their `[max_connections]` cap of
connections (proxy/listener_limits.py): `/metrics` and `/v1/stats` show them as the
listeners `gateway` and `admin-socket` (and `admin`, the admin port), as a proxy's.

SIGUSR1 takes it out of other sites' rotation before a restart (as a proxy leaves
discovery, and as HAProxy drains a server): it deregisters and goes on carrying, so the
callers' proxies stop picking it and close their idle connections through it; its
`/ready` answers 503 "left discovery" meanwhile and `/v1/stats`' `in_flight_inbound`
counts what it still carries. SIGTTIN registers it again (an upgrade that failed).
"""

import asyncio
import dataclasses
import logging
import signal
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from proxy.admin import AdminServer
from proxy.cert_metrics import CertExpiry
from proxy.events import EventBus
from proxy.gateway import Gateway, GatewayMetrics, LocalServices
from proxy.listener_limits import gateway_caps, soft_open_file_limit
from proxy.observability import Observability
from proxy.server import local_address
from proxy.tls import TlsMaterial
from vm_mesh import __version__, paths
from vm_mesh.config import GatewayConfig, host_and_port, load_mesh_config
from vm_mesh.discovery import sites
from vm_mesh.discovery.base import Instance
from vm_mesh.discovery.consul import ConsulDiscovery
from vm_mesh.discovery.lastknown import LastKnownGood
from vm_mesh.errors import UserError

log = logging.getLogger("vmesh.gateway")


class Registration:
    """The gateway's instance in its site's Consul: leaves and joins again on signals."""

    def __init__(self, discovery: ConsulDiscovery, instance: Instance, wan: tuple[str, int],
                 state: "GatewayState") -> None:
        self.discovery = discovery
        self.instance = instance
        self.wan = wan
        self.state = state

    async def join(self) -> None:
        await self.discovery.register(self.instance, wan=self.wan)

    async def leave(self) -> None:
        """Deregister and go on carrying (SIGUSR1): other sites stop picking this gateway."""
        if self.state.left_discovery or self.state.draining:
            return
        self.state.left_discovery = True
        log.info("leaving discovery; still carrying",
                 extra={"event": "discovery_left", "open": self.state.open_connections()})
        await self.discovery.deregister(self.instance)

    async def rejoin(self) -> None:
        """Register again after `leave` (SIGTTIN)."""
        if not self.state.left_discovery or self.state.draining:
            return
        await self.join()
        self.state.left_discovery = False
        log.info("rejoined discovery", extra={"event": "discovery_rejoined"})


class GatewayState:
    """What the gateway tells its admin API (proxy.admin.ProxyState)."""

    service = sites.GATEWAY_SERVICE

    def __init__(self, config: GatewayConfig, gateway: Gateway, services: LocalServices,
                 tls: TlsMaterial | None = None) -> None:
        self._config = config
        self._gateway = gateway
        self._services = services
        self._tls = tls  # the admin port's leaf; None without an admin port
        self.listening = False
        self.draining = False
        self.left_discovery = False

    def ready(self) -> tuple[bool, str]:
        if self.draining:
            return False, "draining"
        if self.left_discovery:
            return False, "left discovery (out of other sites' rotation; still carrying)"
        if not self.listening:
            return False, "not listening yet"
        stale = self._services.stale()
        if stale:  # still ready: it carries connections to the last known instances
            return True, (f"ready; discovery does not answer for {', '.join(sorted(stale))}: "
                          "carrying connections to the last known instances")
        return True, "ready"

    def in_flight(self) -> int:
        return len(self._gateway.connections)

    def in_flight_inbound(self) -> int:
        return len(self._gateway.connections)

    def open_connections(self) -> int:
        return len(self._gateway.connections)

    def endpoints(self) -> dict[str, Any]:
        return {"upstreams": self._services.describe()}

    def certs(self) -> dict[str, Any]:
        if self._tls is not None:
            return {**self._tls.describe(),
                    "note": "the admin port's leaf: the gateway never terminates the TLS it "
                            "carries"}
        return {"identity": None, "chain": [], "bundle": [],
                "error": None, "note": "a mesh gateway holds no key: it never terminates TLS"}

    def config(self) -> dict[str, Any]:
        return {"gateway": {"file": str(paths.gateway_config()),
                            "settings": dataclasses.asdict(self._config)}}


def admin_port_tls(config: GatewayConfig) -> TlsMaterial | None:
    """The leaf the admin port serves, from the gateway's state directory; None without an
    admin port; UserError when there is none usable or it is another identity's."""
    if config.admin_port is None:
        return None
    tls = TlsMaterial(paths.state_dir(sites.GATEWAY_SERVICE))
    if not tls.loaded:
        raise UserError(
            f"{paths.gateway_config()}: admin_port needs a certificate of "
            f"{sites.GATEWAY_SERVICE}, and {tls.directory} holds none usable ({tls.last_error}); "
            f"obtain it as the gateway's user: vmesh cert-helper {sites.GATEWAY_SERVICE} "
            "--once --token TOKEN"
        )
    if (tls.identity.kind, tls.identity.name) != ("svc", sites.GATEWAY_SERVICE):
        raise UserError(
            f"{paths.gateway_config()}: admin_port serves a certificate of "
            f"svc/{sites.GATEWAY_SERVICE}, and {tls.directory} holds one of {tls.identity_uri}: "
            f"put the gateway's own there (vmesh cert-helper {sites.GATEWAY_SERVICE} --once)"
        )
    return tls


def keep_tls(tls: TlsMaterial, identity_url: str | None) -> list[asyncio.Task[None]]:
    """Tasks that reload the admin port's leaf when its files change and, with an identity
    service, renew it as a proxy renews its own."""
    tasks = [asyncio.create_task(tls.follow())]
    if identity_url:
        from identity.renewer import Renewer

        renewer = Renewer(identity_url, tls.directory, on_renewed=tls.reload,
                          validity=lambda: tls.validity)
        tasks.append(asyncio.create_task(renewer.run()))
    return tasks


async def run(config: GatewayConfig) -> None:
    """Run the gateway until SIGTERM or SIGINT, then drain."""
    mesh = load_mesh_config()
    if mesh.discovery is None or mesh.discovery.backend != "consul":
        raise UserError(f"{paths.mesh_config()}: a mesh gateway finds its site's instances in "
                        'Consul: set [discovery] backend = "consul"')
    from vm_mesh.discovery.factory import consul_settings

    discovery = ConsulDiscovery(consul_settings(mesh.discovery), trust_domain=mesh.trust_domain)
    observability = Observability.attach(EventBus())
    logging.getLogger().addHandler(observability.logs)
    services = LocalServices(
        LastKnownGood(discovery, paths.state_dir(sites.GATEWAY_SERVICE) / "discovery"))
    metrics = GatewayMetrics(observability.metrics.registry)
    metrics.stale.set_function(lambda: len(services.stale()))
    gateway = Gateway(config.datacenter, mesh.trust_domain, services, metrics,
                      hello_timeout=config.hello_timeout, connect_timeout=config.connect_timeout,
                      refusal_log_interval=config.refusal_log_interval)
    tls = admin_port_tls(config)
    if tls is not None:  # its expiry, for the alerts that watch the proxies' leaves
        CertExpiry(observability.metrics.registry, tls)
    state = GatewayState(config, gateway, services, tls)
    instance_id = config.instance_id or f"{sites.GATEWAY_SERVICE}-{socket.gethostname()}"
    caps = gateway_caps(config.max_connections, soft_open_file_limit(),
                        admin_listeners=1 if config.admin_port is None else 2)
    log.info("connection limits", extra={"event": "listener_caps", "gateway": caps.gateway,
                                          "admin": caps.admin})
    admin = AdminServer(state, observability, trust_domain=mesh.trust_domain,
                        instance_id=instance_id, version=__version__,
                        max_connections=caps.admin)

    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    changing: set[asyncio.Task[None]] = set()

    def change(step: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = asyncio.ensure_future(step())
        changing.add(task)
        task.add_done_callback(changing.discard)

    loop.add_signal_handler(signal.SIGHUP, lambda: log.info(
        "SIGHUP: a gateway has nothing to reload; restart it to read gateway.toml again"))

    host, _, listen_port = config.listen.rpartition(":")  # checked when the file was read
    server = gateway.serve(host.strip("[]"), int(listen_port),
                           observability.listeners.add("gateway", caps.gateway))
    port = server.sockets[0].getsockname()[1]
    await admin.serve_unix(paths.admin_socket(sites.GATEWAY_SERVICE))
    admin_port = None
    keeping: list[asyncio.Task[None]] = []
    if tls is not None and config.admin_port is not None:
        assert tls.admin_front is not None, "no certificates loaded"  # refused above
        admin_sock = await admin.serve_tcp(host.strip("[]"), config.admin_port, tls.admin_front)
        admin_port = admin_sock.getsockname()[1]
        keeping = keep_tls(tls, mesh.identity_url)
    state.listening = True
    lan = host_and_port(config.lan_address or local_address(config.listen), port)
    wan = host_and_port(config.wan_address, port)
    instance = Instance(service=sites.GATEWAY_SERVICE, instance_id=instance_id, address=lan[0],
                        port=lan[1], proto="tls", version=__version__, admin_port=admin_port)
    registration = Registration(discovery, instance, wan, state)
    await registration.join()
    loop.add_signal_handler(signal.SIGUSR1, change, registration.leave)
    loop.add_signal_handler(signal.SIGTTIN, change, registration.rejoin)
    log.info("gateway ready", extra={"datacenter": config.datacenter, "port": port,
                                     "lan": f"{lan[0]}:{lan[1]}", "wan": f"{wan[0]}:{wan[1]}",
                                     "instance": instance_id,
                                     **({"admin": admin_port} if admin_port is not None else {})})
    await stopped.wait()

    state.draining = True
    log.info("draining", extra={"open": len(gateway.connections)})
    await asyncio.gather(*changing, return_exceptions=True)
    await discovery.deregister(instance)
    server.close()
    open_connections = set(gateway.connections)
    if open_connections:
        _, cut = await asyncio.wait(open_connections, timeout=config.drain)
        for task in cut:
            task.cancel()
        if cut:
            log.warning("drain timeout: connections still open were cut",
                        extra={"cut": len(cut)})
            await asyncio.gather(*cut, return_exceptions=True)
    gateway.tell_unlogged_refusals()
    for task in keeping:
        task.cancel()
    await asyncio.gather(*keeping, return_exceptions=True)
    await services.close()
    await admin.close()
    await discovery.close()
    log.info("gateway stopped")
