"""mesh.toml's [discovery] table picks the backend; every backend keeps a last known good set."""

from pathlib import Path

import pytest

from vm_mesh.discovery.consul import ConsulDiscovery
from vm_mesh.discovery.factory import load_mesh_discovery, open_backend, open_discovery
from vm_mesh.discovery.lastknown import LastKnownGood
from vm_mesh.discovery.static import StaticDiscovery
from vm_mesh.errors import UserError


def mesh_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mesh.toml"
    path.write_text(text)
    return path


def test_missing_file_means_mdns(tmp_path: Path) -> None:
    assert load_mesh_discovery(tmp_path / "absent.toml").backend == "mdns"


def test_consul_settings_reach_the_backend(tmp_path: Path) -> None:
    settings = load_mesh_discovery(mesh_toml(tmp_path, """
        [discovery]
        backend = "consul"
        [discovery.consul]
        port = 18500
        wait = "10s"
    """))
    backend = open_backend(settings)
    assert isinstance(backend, ConsulDiscovery)
    assert backend.settings.port == 18500 and backend.settings.wait == "10s"


def test_static_backend_reads_the_named_file(tmp_path: Path) -> None:
    settings = load_mesh_discovery(mesh_toml(tmp_path, f"""
        [discovery]
        backend = "static"
        file = "{tmp_path / 'endpoints.toml'}"
    """))
    backend = open_backend(settings)
    assert isinstance(backend, StaticDiscovery)


def test_proxies_keep_last_known_good_in_their_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMESH_ROOT", str(tmp_path))
    settings = load_mesh_discovery(mesh_toml(tmp_path, '[discovery]\nbackend = "consul"\n'))
    wrapped = open_discovery(settings, "api")
    assert isinstance(wrapped, LastKnownGood)
    assert wrapped.path("store") == tmp_path / "var/lib/vmesh/api/discovery/store.json"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[discovery]\nbackend = "etcd"\n', "discovery.backend"),
        ('[discovery]\nbakend = "mdns"\n', "discovery.bakend"),
        ("[discovery\n", "TOML"),
    ],
)
def test_bad_mesh_toml_is_one_line_naming_the_file(tmp_path: Path, text: str, reason: str) -> None:
    path = mesh_toml(tmp_path, text)
    with pytest.raises(UserError) as caught:
        load_mesh_discovery(path)
    assert str(path) in str(caught.value) and reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_static_without_file_says_what_to_add(tmp_path: Path) -> None:
    settings = load_mesh_discovery(mesh_toml(tmp_path, '[discovery]\nbackend = "static"\n'))
    with pytest.raises(UserError, match="needs file"):
        open_backend(settings)
