"""The overview's ADDRESS column: a long admin socket path keeps its last components (the
part that tells instances apart), short addresses show whole."""

from console import format as fmt


def test_short_addresses_show_whole() -> None:
    assert fmt.address("/run/vmesh/api.sock") == "/run/vmesh/api.sock"
    assert fmt.address("198.18.0.7:4191") == "198.18.0.7:4191"


def test_a_long_socket_path_keeps_its_last_components() -> None:
    path = "/tmp/ci-clone/demo-state/console/run/vmesh/api-1.sock"
    assert fmt.address(path) == "…/run/vmesh/api-1.sock"
    assert fmt.address(path, limit=16) == "…/api-1.sock"


def test_a_socket_name_longer_than_the_column_keeps_its_end() -> None:
    assert fmt.address("/run/vmesh/" + "x" * 40 + ".sock", limit=12) == "…xxxxxx.sock"
    assert len(fmt.address("/run/vmesh/" + "x" * 40 + ".sock", limit=12)) == 12


def test_a_long_host_port_keeps_its_end() -> None:
    assert fmt.address("[fd00:1234:5678:9abc:def0:1234:5678:9abc]:4191", limit=20) == \
        "…234:5678:9abc]:4191"
