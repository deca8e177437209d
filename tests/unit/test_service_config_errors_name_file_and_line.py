"""A bad service file is reported as `file:line: reason`, one line, pointing at the culprit."""

from pathlib import Path

import pytest

from vm_mesh.config import load_service_config
from vm_mesh.errors import UserError

GOOD = 'service = "web"\napp_port = 8080\n'


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "web.toml"
    path.write_text(text)
    with pytest.raises(UserError) as caught:
        load_service_config(path)
    message = str(caught.value)
    assert "\n" not in message
    return message.removeprefix(f"{path}:")


def test_a_good_file_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "web.toml"
    path.write_text(GOOD + '[timeouts]\nconnect = "500ms"\n')
    config = load_service_config(path).config
    assert (config.service, config.app_port, config.timeouts.connect) == ("web", 8080, 0.5)


def test_toml_syntax_error_names_its_line(tmp_path: Path) -> None:
    assert _error(tmp_path, GOOD + "weight = = 3\n").startswith("3:")


def test_out_of_range_port_names_its_line(tmp_path: Path) -> None:
    message = _error(tmp_path, 'service = "web"\n\napp_port = 70000\n')
    assert message.startswith("3:") and "app_port" in message


def test_bad_listen_address_names_its_line(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD + '[listen]\ninbound = "nowhere"\n')
    assert message.startswith("4:") and "host:port" in message


def test_a_listener_named_by_a_host_name_is_refused(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD + '[listen]\noutbound = "localhost:4140"\n')
    assert message == ("4: listen.outbound: 'localhost:4140': a listener binds an IP address "
                       "(like 127.0.0.1 or [::1]), not a name")


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD + "app_prot = 1\n")
    assert message.startswith("3:") and "app_prot" in message


def test_a_missing_key_points_at_its_table(tmp_path: Path) -> None:
    text = GOOD + '[listen]\ninbound = "0.0.0.0:4143"\n[[tcp]]\nservice = "db"\n'
    message = _error(tmp_path, text)
    assert message == "5: tcp[0].listen: Field required"


def test_a_tcp_upstream_names_a_service_or_another_sites(tmp_path: Path) -> None:
    upstreams = ('[[tcp]]\nservice = "db"\nlisten = "127.0.0.1:5432"\n'
                 '[[tcp]]\nservice = "db.east"\nlisten = "127.0.0.1:5433"\n')
    path = tmp_path / "web.toml"
    path.write_text(GOOD + upstreams)
    config = load_service_config(path).config
    assert [upstream.service for upstream in config.tcp] == ["db", "db.east"]
    message = _error(tmp_path, GOOD + upstreams + '[[tcp]]\nlisten = "127.0.0.1:5434"\n'
                     'service = "Db"\n')
    assert message == ("11: tcp[2].service: 'Db' is not a service name "
                       "(lowercase letters, digits, '-')")


def test_a_number_given_as_text_is_refused_with_what_was_given(tmp_path: Path) -> None:
    message = _error(tmp_path, 'service = "web"\napp_port = "8080"\n')
    assert message == "2: app_port: Input should be a valid integer (got '8080')"


def test_a_file_that_is_not_utf8_names_the_line_of_its_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "web.toml"
    path.write_bytes(GOOD.encode() + "# caf\u00e9\n".encode("latin-1"))
    with pytest.raises(UserError) as caught:
        load_service_config(path)
    assert str(caught.value) == f"{path}:3: not UTF-8 text (byte 0xe9)"
