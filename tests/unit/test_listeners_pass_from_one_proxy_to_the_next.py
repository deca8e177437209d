"""The handover protocol between `vmesh run` and its proxy (proxy/handover.py): a listener is
taken over only where the config still puts it, and a ready message carries its sockets."""

import json
import socket

import pytest

from proxy.handover import (
    LISTEN_FDS_ENV,
    SUPERVISOR_FD_ENV,
    InheritedListeners,
    notify_ready,
    parse_ready_message,
    receive_ready,
    same_address,
)


@pytest.mark.parametrize(("bound", "host", "port", "serves"), [
    (("127.0.0.1", 4140), "127.0.0.1", 4140, True),
    (("127.0.0.1", 4140), "127.0.0.1", 0, True),  # port 0: any port the OS gave
    (("127.0.0.1", 4140), "127.0.0.1", 4141, False),
    (("127.0.0.1", 4140), "127.0.0.2", 4140, False),
    (("0.0.0.0", 4143), "0.0.0.0", 4143, True),
    (("::", 4143), "::", 4143, True),
    (("::1", 4143), "0:0:0:0:0:0:0:1", 4143, True),  # the same address, spelled out
])
def test_a_socket_serves_the_listener_only_where_it_is_bound(
    bound: tuple[str, int], host: str, port: int, serves: bool,
) -> None:
    assert same_address(bound, host, port) is serves


def test_a_ready_message_names_each_socket_it_carries() -> None:
    assert parse_ready_message(b'{"ready": true, "listeners": ["inbound", "admin"]}',
                               [7, 9]) == {"inbound": 7, "admin": 9}


@pytest.mark.parametrize("data", [
    b"not json", b"[]", b'{"ready": true}', b'{"ready": false, "listeners": ["a"]}',
    b'{"ready": true, "listeners": ["a", "b"]}',  # two names, one descriptor
])
def test_a_malformed_ready_message_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_ready_message(data, [7])


@pytest.fixture
def listening() -> socket.socket:
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


def test_an_inherited_listener_is_taken_where_the_config_still_puts_it(
    listening: socket.socket,
) -> None:
    port = listening.getsockname()[1]
    environ = {LISTEN_FDS_ENV: json.dumps({"outbound": listening.fileno()})}
    inherited = InheritedListeners.from_environ(environ)

    taken = inherited.take("outbound", "127.0.0.1", port)

    assert taken is not None and taken.getsockname() == ("127.0.0.1", port)
    assert LISTEN_FDS_ENV not in environ  # not passed on further
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        conn, _ = taken.accept()  # connections queued on the old socket reach the new owner
        conn.close()
    taken.detach()  # the fixture's socket object owns the descriptor


def test_a_listener_the_config_moved_is_bound_anew_and_the_old_socket_closed(
    listening: socket.socket,
) -> None:
    port = listening.getsockname()[1]
    dup = listening.dup()
    inherited = InheritedListeners({"outbound": dup})

    assert inherited.take("outbound", "127.0.0.1", port + 1) is None
    assert dup.fileno() == -1
    assert inherited.take("inbound", "127.0.0.1", 0) is None  # never inherited


def test_a_ready_proxy_gives_its_listeners_to_the_supervisor(listening: socket.socket) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    environ = {SUPERVISOR_FD_ENV: str(theirs.detach())}

    assert notify_ready({"outbound": listening.fileno()}, environ)

    kept = receive_ready(ours)
    assert kept is not None and list(kept) == ["outbound"]
    assert kept["outbound"].getsockname() == listening.getsockname()
    assert not kept["outbound"].get_inheritable()
    assert receive_ready(ours) is None  # the proxy closed its end after the one message
    kept["outbound"].close()
    ours.close()


def test_without_a_supervisor_nobody_is_told() -> None:
    assert notify_ready({"outbound": 3}, {}) is False
