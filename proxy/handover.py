"""Listening sockets handed from one proxy process to the next, through `vmesh run`.

`vmesh run` keeps a copy of each listening socket of its proxy. The proxy it
starts next (after a crash, or to hand over to a new version) accepts on those
same sockets instead of binding anew: connections that arrive meanwhile wait
in the socket's backlog instead of being refused, and during a handover the
old and the new proxy accept from one queue until the old one stops.

The protocol, a one-child version of systemd's file descriptor store:

- `VMESH_LISTEN_FDS`: JSON object, listener name -> an inherited descriptor;
- `VMESH_SUPERVISOR_FD`: a SOCK_SEQPACKET socket to the supervisor. Once ready,
  the proxy sends it one message, `{"ready": true, "listeners": [names]}`,
  carrying its listening sockets (SCM_RIGHTS) in the order of the names.
"""

import contextlib
import ipaddress
import json
import logging
import os
import socket
from collections.abc import Mapping, MutableMapping

log = logging.getLogger("vmesh.proxy.handover")

LISTEN_FDS_ENV = "VMESH_LISTEN_FDS"
SUPERVISOR_FD_ENV = "VMESH_SUPERVISOR_FD"
MAX_MESSAGE = 4096
MAX_FDS = 64


def same_address(bound: tuple[str, int], host: str, port: int) -> bool:
    """Whether a socket bound to `bound` serves a listener configured as `host:port` (an IP
    address, as the config requires; port 0 asks for any port, so any bound port serves it)."""
    return port in (0, bound[1]) and ipaddress.ip_address(host) == ipaddress.ip_address(bound[0])


def ready_message(names: list[str]) -> bytes:
    """The message a ready proxy sends with its listening sockets."""
    return json.dumps({"ready": True, "listeners": names}).encode()


def parse_ready_message(data: bytes, fds: list[int]) -> dict[str, int]:
    """Listener name -> descriptor from a ready message; ValueError if it does not parse."""
    message = json.loads(data)
    names = message.get("listeners") if isinstance(message, dict) else None
    if not isinstance(names, list) or len(names) != len(fds) or not message.get("ready"):
        raise ValueError(f"not a ready message with {len(fds)} listeners: {data[:200]!r}")
    return dict(zip([str(name) for name in names], fds, strict=True))


class InheritedListeners:
    """The listening sockets a supervisor handed to this process, taken one by one."""

    def __init__(self, sockets: Mapping[str, socket.socket]) -> None:
        self._sockets = dict(sockets)

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] = os.environ) -> "InheritedListeners":
        """Take the sockets named in `VMESH_LISTEN_FDS` (and remove it from `environ`)."""
        text = environ.pop(LISTEN_FDS_ENV, "")
        if not text:
            return cls({})
        sockets = {}
        for name, fd in json.loads(text).items():
            try:
                sockets[name] = sock = socket.socket(fileno=int(fd))
                sock.set_inheritable(False)
            except OSError as exc:  # not open in this process: bind anew
                log.warning("inherited listener unusable", extra={"listener": name, "fd": fd,
                                                                  "detail": str(exc)})
        return cls(sockets)

    def take(self, name: str, host: str, port: int) -> socket.socket | None:
        """The inherited socket for listener `name` if it is bound where the config says;
        None (bind anew) otherwise."""
        sock = self._sockets.pop(name, None)
        if sock is None:
            return None
        if sock.type != socket.SOCK_STREAM or not same_address(sock.getsockname()[:2],
                                                                host, port):
            log.info("inherited listener no longer configured; binding anew",
                     extra={"listener": name, "bound": str(sock.getsockname()[:2]),
                            "configured": f"{host}:{port}"})
            sock.close()
            return None
        sock.setblocking(False)
        return sock

    def close_unused(self) -> None:
        """Close the inherited sockets no listener took (the config dropped them)."""
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()


def notify_ready(listeners: Mapping[str, int], environ: MutableMapping[str, str] = os.environ,
                 ) -> bool:
    """Tell the supervisor (if any) that this proxy is ready, and give it the listening
    sockets `listeners` (name -> descriptor) to keep; True when one was told."""
    text = environ.pop(SUPERVISOR_FD_ENV, "")
    if not text:
        return False
    with socket.socket(fileno=int(text)) as channel:
        names = list(listeners)
        try:
            socket.send_fds(channel, [ready_message(names)], [listeners[n] for n in names])
        except OSError as exc:
            log.warning("could not tell the supervisor that the proxy is ready",
                        extra={"detail": str(exc)})
            return False
    return True


def receive_ready(channel: socket.socket) -> dict[str, socket.socket] | None:
    """Read a child's ready message from `channel`: its listening sockets by name, or None
    when the child closed the channel without one. ValueError on a malformed message."""
    data, fds, _, _ = socket.recv_fds(channel, MAX_MESSAGE, MAX_FDS)
    try:
        named = parse_ready_message(data, fds) if data else None
    except ValueError:
        for fd in fds:  # nothing leaks from a message that does not parse
            with contextlib.suppress(OSError):
                os.close(fd)
        raise
    if named is None:
        return None
    sockets = {name: socket.socket(fileno=fd) for name, fd in named.items()}
    for sock in sockets.values():
        sock.set_inheritable(False)  # passed on to the next proxy only, by `pass_fds`
    return sockets
