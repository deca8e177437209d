"""The mesh.toml the Ansible role renders is one the proxy loads, with the discovery backend the
inventory asked for."""

import json
from pathlib import Path

import jinja2
import pytest

from vm_mesh.config import load_mesh_config

TEMPLATE = Path(__file__).resolve().parents[2] / "ansible/roles/vmesh/templates/mesh.toml.j2"


def render(tmp_path: Path, **variables: object) -> Path:
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    environment.filters["to_json"] = json.dumps
    defaults = {
        "ansible_managed": "Ansible managed", "vmesh_trust_domain": "vmesh.local",
        "vmesh_identity_url": "https://198.18.0.1:8443", "vmesh_discovery_interfaces": [],
        "vmesh_discovery_consul_url": "http://127.0.0.1:8500", "vmesh_tracing_otlp_endpoint": "",
        "vmesh_discovery_datacenters": None, "vmesh_discovery_gateways": [],
    }
    text = environment.from_string(TEMPLATE.read_text()).render({**defaults, **variables})
    path = tmp_path / "mesh.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("backend", ["mdns", "consul", "static"])
def test_rendered_mesh_toml_chooses_the_backend(tmp_path: Path, backend: str) -> None:
    mesh = load_mesh_config(render(tmp_path, vmesh_discovery_backend=backend))
    assert mesh.discovery is not None and mesh.discovery.backend == backend
    assert mesh.identity_url == "https://198.18.0.1:8443"


def test_interfaces_and_consul_agent_reach_the_discovery_table(tmp_path: Path) -> None:
    mesh = load_mesh_config(render(tmp_path, vmesh_discovery_backend="consul",
                                   vmesh_discovery_interfaces=["198.18.0.2"]))
    assert mesh.discovery is not None
    assert mesh.discovery.interfaces == ("198.18.0.2",)
    assert mesh.discovery.consul_url == "http://127.0.0.1:8500"
    assert mesh.discovery.datacenters is None  # any datacenter the agent knows


@pytest.mark.parametrize("datacenters", [["east", "west"], []])
def test_the_sites_names_may_name_reach_the_discovery_table(
        tmp_path: Path, datacenters: list[str]) -> None:
    mesh = load_mesh_config(render(tmp_path, vmesh_discovery_backend="consul",
                                   vmesh_discovery_datacenters=datacenters))
    assert mesh.discovery is not None and mesh.discovery.datacenters == tuple(datacenters)


def test_the_sites_reached_through_gateways_reach_the_discovery_table(tmp_path: Path) -> None:
    mesh = load_mesh_config(render(tmp_path, vmesh_discovery_backend="consul",
                                   vmesh_discovery_gateways=["east"]))
    assert mesh.discovery is not None and mesh.discovery.gateways == ("east",)
    plain = load_mesh_config(render(tmp_path, vmesh_discovery_backend="consul"))
    assert plain.discovery is not None and plain.discovery.gateways == ()


def test_a_tracing_endpoint_reaches_the_tracing_table_and_none_means_no_table(
        tmp_path: Path) -> None:
    endpoint = "http://198.18.0.9:4318/v1/traces"
    traced = load_mesh_config(render(tmp_path, vmesh_discovery_backend="mdns",
                                     vmesh_tracing_otlp_endpoint=endpoint))
    assert traced.tracing is not None and traced.tracing.otlp_endpoint == endpoint
    assert load_mesh_config(render(tmp_path, vmesh_discovery_backend="mdns")).tracing is None
