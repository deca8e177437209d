"""The listeners' connection caps (a proxy's and a mesh gateway's): those the file sets, the
rest shares of the open-file limit that keep every listener at its cap within it; and a
listener that fills up logs the saturation once per episode, no more than its log pace
allows however often it flaps."""

import logging

import pytest

from proxy.listener_limits import (
    FDS_PER_PROXIED_CONNECTION,
    RESERVED_FDS,
    SATURATION_LOG_BURST,
    ConnectionLimit,
    GatewayCaps,
    gateway_caps,
    listener_caps,
)
from vm_mesh.config import GatewayMaxConnections, MaxConnections


@pytest.mark.parametrize("nofile", [1024, 65536])
@pytest.mark.parametrize("tcp_listeners", [0, 3])
def test_the_default_caps_all_full_stay_within_the_open_file_limit(
    nofile: int, tcp_listeners: int
) -> None:
    caps = listener_caps(MaxConnections(), nofile, tcp_listeners)
    data = caps.inbound + caps.outbound + caps.tcp * tcp_listeners
    assert data * FDS_PER_PROXIED_CONNECTION + 2 * caps.admin < nofile
    assert caps.inbound == caps.outbound == caps.tcp > caps.admin


def test_caps_the_file_sets_are_kept_and_an_unlimited_file_limit_is_bounded() -> None:
    caps = listener_caps(MaxConnections(outbound=3, admin=5), -1, 0)
    assert (caps.outbound, caps.admin) == (3, 5)
    assert caps.inbound > 1000


@pytest.mark.parametrize("nofile", [256, 1024, 65536])
@pytest.mark.parametrize("admin_listeners", [1, 2])  # the socket; and an admin port
def test_a_gateway_full_by_default_stays_within_the_open_file_limit(
        nofile: int, admin_listeners: int) -> None:
    caps = gateway_caps(GatewayMaxConnections(), nofile, admin_listeners)
    set_aside = RESERVED_FDS + admin_listeners * caps.admin  # its own files, its admin
    assert caps.gateway * FDS_PER_PROXIED_CONNECTION + set_aside <= nofile
    # the gateway's one data listener takes the rest: one connection more would not fit
    assert (caps.gateway + 1) * FDS_PER_PROXIED_CONNECTION + set_aside > nofile


def test_a_gateway_keeps_the_caps_its_file_sets() -> None:
    assert gateway_caps(GatewayMaxConnections(gateway=3, admin=5), -1) == GatewayCaps(3, 5)


def test_each_saturation_is_logged_once_and_flapping_within_the_pace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limit = ConnectionLimit("outbound", 2)
    with caplog.at_level(logging.INFO, logger="vmesh.proxy.listeners"):
        limit.opened()
        assert not limit.saturated
        limit.opened()
        assert limit.saturated
        for _ in range(5):  # closes and fills up again: an episode each time
            limit.closed()
            limit.opened()
    assert limit.saturations == 6
    events = [r.event for r in caplog.records]  # type: ignore[attr-defined]
    assert events == ["listener_saturated", "listener_resumed"] * SATURATION_LOG_BURST
    limit.closed()
    assert limit.snapshot() == {"open": 1, "max": 2, "saturated": False, "saturations": 6}
