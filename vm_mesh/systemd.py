"""systemd unit files: the proxy (a template, one instance per service), the identity service,
the certificate helper (a template, one instance per program it certifies) and the mesh
gateway.

The units run as a dedicated user with the filesystem read-only
(`ProtectSystem=strict`) except the service's own state directory and
`/run/vmesh`; logs go to journald; `systemctl reload` sends SIGHUP (the proxy
re-reads policy and certificates); `systemctl stop` sends SIGTERM and waits
long enough for the proxy's drain to finish before SIGKILL.
"""

from dataclasses import dataclass
from pathlib import Path

from vm_mesh.files import write_file

DEFAULT_VMESH_BIN = "/opt/vmesh/venv/bin/vmesh"
DEFAULT_USER = "vmesh"
# The proxy drains for at most its `timeouts.drain` (30 s by default); systemd waits longer.
DEFAULT_DRAIN_S = 30
STOP_MARGIN_S = 10

PROXY_UNIT = "vmesh-proxy@.service"
IDENTITY_UNIT = "vmesh-identity.service"
CERT_HELPER_UNIT = "vmesh-cert-helper@.service"
GATEWAY_UNIT = "vmesh-gateway.service"

_HARDENING = """\
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
CapabilityBoundingSet=
UMask=0077"""


@dataclass(frozen=True, slots=True)
class UnitSettings:
    """What differs between installations."""

    vmesh_bin: str = DEFAULT_VMESH_BIN
    user: str = DEFAULT_USER
    drain_s: int = DEFAULT_DRAIN_S


def _service_section(settings: UnitSettings, exec_start: str, state: str, log_id: str) -> str:
    return f"""\
[Service]
Type=exec
User={settings.user}
Group={settings.user}
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
{_RUNNING}
TimeoutStopSec={settings.drain_s + STOP_MARGIN_S}s
SyslogIdentifier={log_id}
ConfigurationDirectory=vmesh
StateDirectory={state}
StateDirectoryMode=0700
RuntimeDirectory=vmesh
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=yes
LimitNOFILE=65536
{_HARDENING}
"""


# What every vmesh unit's process shares: restarts, stop signal, logs to journald.
_RUNNING = """\
Restart=on-failure
RestartSec=2s
KillSignal=SIGTERM
KillMode=mixed
Environment=PYTHONUNBUFFERED=1
StandardOutput=journal
StandardError=journal"""


def _daemon_unit(settings: UnitSettings, description: str, after: str, command: str,
                 state: str, log_id: str) -> str:
    """A long-running vmesh process's unit: `vmesh <command>`, started after `after`."""
    return f"""\
[Unit]
Description={description}
Wants=network-online.target
After={after}
StartLimitIntervalSec=60s
StartLimitBurst=5

{_service_section(settings, f"{settings.vmesh_bin} {command}", state, log_id)}
[Install]
WantedBy=multi-user.target
"""


def proxy_unit(settings: UnitSettings) -> str:
    """`vmesh-proxy@.service`: the instance name is the service (`vmesh-proxy@api`)."""
    return _daemon_unit(settings, "vmesh sidecar proxy for %i",
                        "network-online.target vmesh-identity.service", "proxy run %i",
                        "vmesh/%i", "vmesh-proxy@%i")


def identity_unit(settings: UnitSettings) -> str:
    """`vmesh-identity.service`: the CA host's CSR-signing service."""
    return _daemon_unit(settings,
                        "vmesh identity service (issues short-lived mesh certificates)",
                        "network-online.target", "identity serve", "vmesh/identity",
                        "vmesh-identity")


def gateway_unit(settings: UnitSettings) -> str:
    """`vmesh-gateway.service`: the site's mesh gateway (/etc/vmesh/gateway.toml), on the hosts
    other sites reach; its data path holds no key (only an `admin_port` needs a leaf, which
    the gateway renews itself)."""
    return _daemon_unit(settings,
                        "vmesh mesh gateway (other sites' mTLS connections, routed by SNI)",
                        "network-online.target", "gateway run", "vmesh/vmesh-gateway",
                        "vmesh-gateway")


def cert_helper_unit(settings: UnitSettings) -> str:
    """`vmesh-cert-helper@.service`: keeps `svc/%i`'s leaf renewed for the program of the same
    name, run as that program's user (`vmesh-cert-helper@prometheus` runs as `prometheus`
    and keeps /var/lib/vmesh/prometheus, which Prometheus reads). The first leaf needs a
    one-time token: `VMESH_JOIN_TOKEN=...` in /etc/vmesh/cert-helper/%i.env; the identity
    service is mesh.toml's `identity_url`."""
    return f"""\
[Unit]
Description=vmesh certificate helper: keeps svc/%i's mesh certificate renewed for %i
Wants=network-online.target
After=network-online.target vmesh-identity.service
StartLimitIntervalSec=60s
StartLimitBurst=5

[Service]
Type=exec
User=%i
Group=%i
EnvironmentFile=-/etc/vmesh/cert-helper/%i.env
ExecStart={settings.vmesh_bin} cert-helper %i
{_RUNNING}
TimeoutStopSec={STOP_MARGIN_S}s
SyslogIdentifier=vmesh-cert-helper@%i
ConfigurationDirectory=vmesh
StateDirectory=vmesh/%i
StateDirectoryMode=0700
{_HARDENING}

[Install]
WantedBy=multi-user.target
"""


def render(settings: UnitSettings) -> dict[str, str]:
    """File name -> content of every vmesh unit."""
    return {PROXY_UNIT: proxy_unit(settings), IDENTITY_UNIT: identity_unit(settings),
            CERT_HELPER_UNIT: cert_helper_unit(settings), GATEWAY_UNIT: gateway_unit(settings)}


def write_units(directory: Path, settings: UnitSettings) -> list[Path]:
    """Write the units into `directory` (created if needed); returns the files written."""
    written = []
    for name, text in render(settings).items():
        path = directory / name
        write_file(path, text.encode())
        written.append(path)
    return written
