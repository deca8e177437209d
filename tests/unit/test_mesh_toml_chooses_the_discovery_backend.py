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


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        # Consul answers 400 `Invalid wait time` to every query: no watch would ever sync
        ('consul_wait = "30"', "discovery.consul_wait: invalid duration '30'"),
        ('consul_wait = "0s"', "discovery.consul_wait: 0s is not between"),
        ('consul_wait = "15m"', "discovery.consul_wait: 15m is not between"),
        # the agent refuses the check (and so the registration) for ever
        ('consul_check_interval = "5"', "discovery.consul_check_interval: invalid duration"),
        ('consul_deregister_after = "30s"', "discovery.consul_deregister_after: 30s is not"),
    ],
)
def test_consul_durations_the_agent_would_refuse_name_file_line_and_key(
    tmp_path: Path, line: str, reason: str
) -> None:
    path = mesh_toml(tmp_path, f'[discovery]\nbackend = "consul"\n{line}\n')
    with pytest.raises(UserError) as caught:
        load_mesh_config(path)
    assert f"{path}:3: {reason}" in str(caught.value)


def test_consul_durations_within_consuls_bounds_load(tmp_path: Path) -> None:
    path = mesh_toml(tmp_path, '[discovery]\nbackend = "consul"\nconsul_wait = "10m"\n'
                     'consul_check_interval = "100ms"\nconsul_deregister_after = "1m30s"\n')
    loaded = load_mesh_config(path).discovery
    assert loaded is not None
    assert (loaded.consul_wait, loaded.consul_check_interval, loaded.consul_deregister_after) == (
        "10m", "100ms", "1m30s")
