"""A sidecar proxy process: listeners (inherited from its predecessor where it had them), admin
API, discovery registration, drain on SIGTERM, handover on SIGUSR2."""

import asyncio
import dataclasses
import gc
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from proxy.acceptor import Acceptor
from proxy.admin import AdminServer
from proxy.context import ProxyContext
from proxy.handover import InheritedListeners, notify_ready
from proxy.inbound import InboundProxy
from proxy.listener_limits import (
    ConnectionLimit,
    ListenerCaps,
    listener_caps,
    soft_open_file_limit,
)
from proxy.outbound import OutboundProxy
from proxy.span_export import SpanExport
from proxy.state import RunningProxyState
from proxy.tcp import TcpUpstreamListener
from proxy.tls import TlsMaterial
from vm_mesh import __version__, paths
from vm_mesh.config import (
    DiscoveryChoice,
    LoadedConfig,
    MaxConnections,
    MeshConfig,
    Timeouts,
    effective_discovery,
    load_mesh_config,
    load_service_config,
)
from vm_mesh.discovery.base import Discovery, Instance
from vm_mesh.errors import UserError
from vm_mesh.policy.files import PolicyInvalid
from vm_mesh.policy.store import PolicyStore

log = logging.getLogger("vmesh.proxy")

# Service-file fields read afresh for every connection, so a SIGHUP can change them.
LIVE_CONFIG_FIELDS = ("timeouts",)

# A request allocates a hundred or so containers that die with it; the default first threshold
# (700) ran a collection every few requests and promoted whatever was in flight then.
GC_THRESHOLDS = (20_000, 20, 20)


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def choose_discovery(loaded: LoadedConfig, mesh: MeshConfig, mesh_path: Path) -> DiscoveryChoice:
    """The discovery settings of this proxy (mesh.toml wins), logged with where they came from."""
    choice = effective_discovery(loaded, mesh, mesh_path)
    if choice.ignored is not None:
        log.warning("the service file's [discovery] table is ignored: mesh.toml has one",
                    extra={"event": "config_discovery_overridden", "file": str(choice.ignored),
                           "used": str(choice.file)})
    log.info("discovery backend chosen",
             extra={"backend": choice.settings.backend,
                    "file": str(choice.file) if choice.file else "defaults"})
    return choice


def open_discovery(loaded: LoadedConfig, choice: DiscoveryChoice) -> Discovery:
    """The discovery backend `choice` names (mdns and consul keep last known good)."""
    from vm_mesh.discovery import factory

    return factory.open_discovery(
        choice.settings,
        loaded.config.service,
        local_address(loaded.config.listen.admin),
        trust_domain=loaded.config.trust_domain,
    )


def open_file_caps(settings: MaxConnections, tcp_listeners: int) -> ListenerCaps:
    """The listeners' caps: those the service file sets, the rest shares of this process's
    open-file limit (RLIMIT_NOFILE, soft)."""
    return listener_caps(settings, soft_open_file_limit(), tcp_listeners)


def local_address(listen: str) -> str:
    """Where a process on this host reaches a listener on `listen` (loopback for a wildcard)."""
    host, _ = _split(listen)
    if host in ("", "0.0.0.0", "*"):
        return "127.0.0.1"
    return "::1" if host == "::" else host


class ProxyServer:
    """One proxy: started by `start()`, stopped by `drain()`."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        config = loaded.config
        tls = TlsMaterial(paths.state_dir(config.service))
        if not tls.loaded:
            raise UserError(
                f"no usable certificate in {tls.directory} ({tls.last_error}); "
                f"join the mesh first: vmesh join --service {config.service} ..."
            )
        policy = PolicyStore()
        try:
            policy.load_initial()
        except PolicyInvalid as exc:
            raise UserError("policy rejected:\n" + "\n".join(str(e) for e in exc.errors)) from None
        mesh_path = paths.mesh_config()
        mesh = load_mesh_config(mesh_path)
        self.discovery = choose_discovery(loaded, mesh, mesh_path)
        self.ctx = ProxyContext(config, tls, open_discovery(loaded, self.discovery), policy)
        self.state = RunningProxyState(self.ctx, str(loaded.path), self.discovery)
        self.caps = open_file_caps(config.max_connections, len(config.tcp))
        self.admin = AdminServer(
            self.state,
            self.ctx.observability,
            trust_domain=config.trust_domain,
            instance_id=config.instance,
            version=config.version or __version__,
            idle_timeout=config.timeouts.idle,
            request_timeout=config.timeouts.header,
            max_connections=self.caps.admin,
        )
        self._tracing = mesh.tracing  # applied once the loop runs, in start()
        self.spans = SpanExport(self.ctx, {
            "service.name": config.service,
            "service.instance.id": config.instance,
            "service.version": config.version,
        })
        self.inbound = InboundProxy(self.ctx)
        self.outbound = OutboundProxy(self.ctx)
        self._servers: list[Acceptor] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.ports: dict[str, int] = {}

    async def start(self) -> None:
        config = self.ctx.config
        logging.getLogger().addHandler(self.ctx.observability.logs)
        self.spans.apply(self._tracing)  # before the listeners: every request may have a span
        inherited = InheritedListeners.from_environ()
        limits = self.ctx.observability.listeners
        caps = self.caps
        log.info("connection limits", extra={"event": "listener_caps", "inbound": caps.inbound,
                                              "outbound": caps.outbound, "each_tcp": caps.tcp,
                                              "each_admin": caps.admin})

        def where(name: str, address: str, cap: int
                  ) -> tuple[str, int, ConnectionLimit, socket.socket | None]:
            host, port = _split(address)
            return host, port, limits.add(name, cap), inherited.take(name, host, port)

        inbound = self.inbound.serve(*where("inbound", config.listen.inbound, caps.inbound))
        outbound = self.outbound.serve(*where("outbound", config.listen.outbound, caps.outbound))
        self._servers += [inbound, outbound]
        listeners = {"inbound": inbound.sockets[0], "outbound": outbound.sockets[0]}
        for upstream in config.tcp:
            listener = TcpUpstreamListener(self.ctx, upstream.service, self.outbound)
            name = f"tcp:{upstream.service}"
            server = listener.serve(*where(name, upstream.listen, caps.tcp))
            self._servers.append(server)
            listeners[name] = server.sockets[0]
        await self.admin.serve_unix(paths.admin_socket(config.service))
        admin_host, admin_port = _split(config.listen.admin)
        admin_sock = inherited.take("admin", admin_host, admin_port)
        admin_tls = self.ctx.tls.admin_front
        assert admin_tls is not None, "no certificates loaded"  # refused in __init__
        listeners["admin"] = await self.admin.serve_tcp(
            admin_host, admin_port, admin_tls, sock=admin_sock
        )
        inherited.close_unused()
        self.ports = {name: sock.getsockname()[1] for name, sock in listeners.items()}
        self.state.listening = True
        instance = self.state.instance = Instance(
            service=config.service,
            instance_id=config.instance,
            address=config.listen.advertise,
            port=self.ports["inbound"],
            admin_port=self.ports["admin"],
            zone=config.zone,
            weight=config.weight,
            version=config.version or __version__,
        )
        if self.discovery.settings.backend == "consul":  # its KV store holds policy too
            self.state.policy_unread = f"consul at {self.discovery.settings.consul_url}"
        await self.ctx.discovery.register(instance)
        self._tasks += [
            asyncio.create_task(self.ctx.tls.follow()),
            asyncio.create_task(self.ctx.policy.watch()),
        ]
        if self.discovery.settings.backend == "consul":
            self._tasks.append(asyncio.create_task(self._watch_consul_policy()))
        if config.identity_url:
            from identity.renewer import Renewer

            renewer = self.state.renewer = Renewer(
                config.identity_url,
                self.ctx.tls.directory,
                on_renewed=self.ctx.tls.reload,
                validity=lambda: self.ctx.tls.validity,
            )
            self._tasks.append(asyncio.create_task(renewer.run()))
        log.info(
            "proxy ready",
            extra={
                "service": config.service,
                "instance": config.instance,
                "identity": str(self.ctx.tls.identity),
                **self.ports,
            },
        )
        if notify_ready({name: sock.fileno() for name, sock in listeners.items()}):
            log.info("told the supervisor: ready; it keeps a copy of the listeners",
                     extra={"listeners": sorted(listeners)})

    async def _watch_consul_policy(self) -> None:
        """Policy documents from the agent's KV store (`vmesh/policy/...`) join the files."""
        from vm_mesh.discovery.consul import agent_client
        from vm_mesh.discovery.factory import consul_settings
        from vm_mesh.policy.consul_source import ConsulPolicySource, watch

        settings = consul_settings(self.discovery.settings)
        await watch(ConsulPolicySource(agent_client(settings)), self._consul_policy_read,
                    wait=settings.wait, query_interval_s=settings.query_interval_s)

    def _consul_policy_read(self, texts: tuple[tuple[str, str], ...]) -> None:
        """The documents of the agent's KV store, each time they change (the first answer
        too, which discovery's first sync waits for, whether or not the documents are valid)."""
        self.state.policy_unread = None
        self.ctx.policy.set_extra_texts(texts, "consul")

    def reload(self) -> None:
        """SIGHUP: re-read the service file, mesh.toml's tracing, policy and certificates
        (the endpoints file is watched anyway)."""
        log.info("reload requested (SIGHUP)")
        self._reload_service_config()
        self._reload_tracing()
        self.ctx.policy.reload("sighup")
        self.ctx.tls.reload()

    def _reload_tracing(self) -> None:
        """Apply mesh.toml's `[tracing]` again; a file that does not load keeps it as it is."""
        try:
            self.spans.apply(load_mesh_config().tracing)
        except UserError as exc:
            log.error("mesh.toml not reloaded; tracing stays as it is",
                      extra={"event": "config_reload_failed", "reason": "config.invalid",
                             "detail": str(exc)})

    def _reload_service_config(self) -> None:
        """Apply the live-changeable parts (timeouts) of the service file; a file that does
        not load keeps the config in force, and other changes are named as needing a restart."""
        try:
            fresh = load_service_config(self.loaded.path).config
        except UserError as exc:
            log.error("service config not reloaded; keeping the one in force",
                      extra={"event": "config_reload_failed", "reason": "config.invalid",
                             "detail": str(exc)})
            return
        current = self.ctx.config
        needs_restart = sorted(
            f.name for f in dataclasses.fields(current)
            if f.name not in LIVE_CONFIG_FIELDS
            and getattr(fresh, f.name) != getattr(current, f.name)
        )
        if needs_restart:
            log.warning("service config changes need a restart to take effect",
                        extra={"event": "config_restart_needed", "fields": needs_restart})
        self.ctx.config = dataclasses.replace(
            current, **{name: getattr(fresh, name) for name in LIVE_CONFIG_FIELDS}
        )
        self._apply_timeouts(fresh.timeouts)
        log.info("service config reloaded", extra={"event": "config_reloaded"})

    def _apply_timeouts(self, timeouts: Timeouts) -> None:
        """Have the pools and the admin API follow reloaded timeouts (client connections and
        requests read theirs from the config in force)."""
        self.inbound.pool.idle_timeout = timeouts.app_idle
        self.outbound.pool.idle_timeout = timeouts.idle / 2
        self.admin.idle_timeout = timeouts.idle
        self.admin.request_timeout = timeouts.header

    async def leave_discovery(self) -> None:
        """Deregister (peers stop picking this instance) but go on serving: the first step of
        an upgrade, before `vmesh run` hands the listeners to the new version's proxy."""
        instance = self.state.instance
        if instance is None or self.state.left_discovery:
            return
        self.state.left_discovery = True
        log.info("leaving discovery; still serving", extra={"event": "discovery_left",
                                                            "in_flight": self.ctx.in_flight})
        try:
            await self.ctx.discovery.deregister(instance)
        except Exception as exc:
            log.error("could not leave discovery", extra={"event": "discovery_leave_failed",
                                                          "detail": str(exc)})

    async def rejoin_discovery(self) -> None:
        """Register again after `leave_discovery` (SIGTTIN, as HAProxy resumes its listeners
        with it): an upgrade that failed, and left this proxy serving, gives it back to its
        peers."""
        instance = self.state.instance
        if instance is None or not self.state.left_discovery or self.state.draining:
            return
        try:
            await self.ctx.discovery.register(instance)
        except Exception as exc:
            log.error("could not rejoin discovery", extra={"event": "discovery_rejoin_failed",
                                                           "detail": str(exc)})
            return
        self.state.left_discovery = False
        log.info("rejoined discovery", extra={"event": "discovery_rejoined"})

    async def drain(self, leave_discovery: bool = True) -> None:
        """Leave discovery (unless a successor took over the registration), stop accepting,
        let client connections end after their next response (`connection: close`; idle
        ones close), finish in-flight requests, then stop. At the drain timeout the proxy cuts
        what is still open itself, tunnels then client connections, each request in flight
        ending with its error (`ProxyContext.cut_request`), before its last events go out."""
        self.state.draining = True
        log.info("draining", extra={"in_flight": self.ctx.in_flight,
                                    "leave_discovery": leave_discovery})
        # leave discovery first, so peers stop picking this instance before it stops accepting
        if leave_discovery:
            await self.leave_discovery()
        for server in self._servers:
            server.close()
        if not leave_discovery:  # handed over: the successor answers on the admin port
            self.admin.stop_accepting_tcp()
        self.ctx.drain_clients()
        try:
            await asyncio.wait_for(self.ctx.drained(), self.ctx.config.timeouts.drain)
        except TimeoutError:
            in_flight, connections = self.ctx.in_flight, self.ctx.open_clients
            requests_cut, tunnels_cut = await self.ctx.cut_connections()
            log.warning(
                "drain timeout: requests still in flight were cut",
                extra={"in_flight": in_flight, "connections": connections,
                       "tunnels_cut": tunnels_cut, "requests_cut": requests_cut},
            )
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.ctx.shadows.close()  # mirrored copies still under way: no new connections
        self.inbound.pool.close()
        self.outbound.pool.close()
        await self.admin.close()
        await self.ctx.discovery.close(withdraw=leave_discovery)
        await self.ctx.close()
        self.ctx.bus.flush()  # the access log lines (and spans) of the last requests
        await self.spans.close()
        log.info("stopped")


async def run(loaded: LoadedConfig) -> None:
    """Run a proxy until a stop signal, then drain: SIGTERM or SIGINT leave discovery first;
    SIGUSR2 (from `vmesh run`, once a successor is ready on the same listeners) does not,
    the successor holds the registration. SIGUSR1 leaves discovery and keeps serving,
    SIGTTIN joins it again; SIGHUP reloads."""
    server = ProxyServer(loaded)
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[bool] = loop.create_future()  # the result: leave discovery?

    def stop(leave: bool) -> None:
        if not stopped.done():
            stopped.set_result(leave)

    # before start(): a SIGTERM that arrives once /ready answers must still drain
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, True)
    loop.add_signal_handler(signal.SIGUSR2, stop, False)
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    changing: set[asyncio.Task[None]] = set()  # leaving or rejoining discovery

    def change(step: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.ensure_future(step())
        changing.add(task)
        task.add_done_callback(changing.discard)

    loop.add_signal_handler(signal.SIGUSR1, change, server.leave_discovery)
    loop.add_signal_handler(signal.SIGTTIN, change, server.rejoin_discovery)
    await server.start()
    # what start-up built (modules, config, policy models) lives as long as the process: out
    # of the collector's sight, the collections that requests trigger traverse only their own
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    await server.drain(leave_discovery=await stopped)
