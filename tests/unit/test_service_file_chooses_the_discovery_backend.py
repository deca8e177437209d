"""A service file's [discovery] table picks the backend; mdns and consul keep a last known good."""

from pathlib import Path

import pytest

from vm_mesh.config import load_service_config
from vm_mesh.discovery.consul import ConsulDiscovery
from vm_mesh.discovery.factory import open_backend, open_discovery
from vm_mesh.discovery.lastknown import LastKnownGood
from vm_mesh.discovery.static import StaticDiscovery
from vm_mesh.errors import UserError


def service_file(tmp_path: Path, discovery: str) -> Path:
    path = tmp_path / "api.toml"
    path.write_text(f'service = "api"\napp_port = 8080\n[discovery]\n{discovery}\n')
    return path


def test_consul_settings_reach_the_backend(tmp_path: Path) -> None:
    loaded = load_service_config(service_file(tmp_path, (
        'backend = "consul"\nconsul_url = "https://consul.example:18500"\nconsul_wait = "10s"'
    )))
    backend = open_backend(loaded.config.discovery)
    assert isinstance(backend, ConsulDiscovery)
    settings = backend.settings
    assert (settings.scheme, settings.host, settings.port) == ("https", "consul.example", 18500)
    assert settings.wait == "10s"


def test_static_backend_is_not_wrapped(tmp_path: Path) -> None:
    loaded = load_service_config(service_file(tmp_path, 'backend = "static"'))
    assert isinstance(open_discovery(loaded.config.discovery, "api"), StaticDiscovery)


def test_consul_proxies_keep_last_known_good_in_their_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMESH_ROOT", str(tmp_path))
    loaded = load_service_config(service_file(tmp_path, 'backend = "consul"'))
    wrapped = open_discovery(loaded.config.discovery, "api")
    assert isinstance(wrapped, LastKnownGood)
    assert wrapped.path("store") == tmp_path / "var/lib/vmesh/api/discovery/store.json"


@pytest.mark.parametrize(
    ("discovery", "reason"),
    [
        ('backend = "etcd"', "discovery.backend"),
        ('backend = "consul"\nconsul_url = "127.0.0.1:8500"', "discovery.consul_url"),
    ],
)
def test_bad_discovery_table_names_file_line_and_key(
    tmp_path: Path, discovery: str, reason: str
) -> None:
    path = service_file(tmp_path, discovery)
    with pytest.raises(UserError) as caught:
        load_service_config(path)
    assert str(path) in str(caught.value) and reason in str(caught.value)
