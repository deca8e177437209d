"""mesh.toml's [discovery] table picks the backend for every proxy of the host; a service file's
own table counts only where mesh.toml has none; with neither, mDNS."""

from pathlib import Path

import pytest

from vm_mesh.config import effective_discovery, load_mesh_config, load_service_config
from vm_mesh.errors import UserError


def service_file(tmp_path: Path, discovery: str = "") -> Path:
    path = tmp_path / "api.toml"
    table = f"[discovery]\n{discovery}\n" if discovery else ""
    path.write_text(f'service = "api"\napp_port = 8080\n{table}')
    return path


def mesh_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mesh.toml"
    path.write_text(text)
    return path


def test_mesh_toml_wins_over_the_service_file(tmp_path: Path) -> None:
    mesh = mesh_toml(tmp_path, 'trust_domain = "vmesh.local"\n[discovery]\nbackend = "consul"\n')
    loaded = load_service_config(service_file(tmp_path, 'backend = "static"'))
    choice = effective_discovery(loaded, load_mesh_config(mesh), mesh)
    assert choice.settings.backend == "consul"
    assert choice.file == mesh and choice.ignored == loaded.path


def test_service_file_table_counts_when_mesh_toml_has_none(tmp_path: Path) -> None:
    mesh = mesh_toml(tmp_path, 'identity_url = "https://ca.example:8443"\n')
    loaded = load_service_config(service_file(tmp_path, 'backend = "static"'))
    choice = effective_discovery(loaded, load_mesh_config(mesh), mesh)
    assert (choice.settings.backend, choice.file, choice.ignored) == ("static", loaded.path, None)


def test_without_any_table_the_backend_is_mdns(tmp_path: Path) -> None:
    loaded = load_service_config(service_file(tmp_path))
    missing = tmp_path / "missing.toml"
    choice = effective_discovery(loaded, load_mesh_config(missing), missing)
    assert (choice.settings.backend, choice.file) == ("mdns", None)


def test_bad_mesh_toml_names_file_line_and_key(tmp_path: Path) -> None:
    path = mesh_toml(tmp_path, 'trust_domain = "vmesh.local"\n[discovery]\nbackend = "etcd"\n')
    with pytest.raises(UserError) as caught:
        load_mesh_config(path)
    assert f"{path}:3: discovery.backend" in str(caught.value)


def test_a_tracing_endpoint_that_is_not_a_url_names_file_line_and_key(tmp_path: Path) -> None:
    path = mesh_toml(tmp_path, '[tracing]\notlp_endpoint = "collector:4318"\n')
    with pytest.raises(UserError) as caught:
        load_mesh_config(path)
    assert f"{path}:2: tracing.otlp_endpoint: 'collector:4318' is not a URL" in str(caught.value)
