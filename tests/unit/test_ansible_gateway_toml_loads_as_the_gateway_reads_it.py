"""The gateway.toml role vmesh_gateway renders is one `vmesh gateway run` loads, with the site,
addresses and drain the inventory gave."""

from pathlib import Path

import jinja2
import yaml

from vm_mesh.config import GatewayConfig, load_gateway_config

ROLE = Path(__file__).resolve().parents[2] / "ansible/roles/vmesh_gateway"


def render(tmp_path: Path, **variables: object) -> GatewayConfig:
    """The role's template rendered with its defaults (their own templates resolved for a host
    `gw1` at 198.18.0.5) and `variables`, then read by the gateway's loader."""
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    host = {"ansible_managed": "Ansible managed", "inventory_hostname": "gw1",
            "ansible_host": "198.18.0.5"}
    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    resolved = {name: environment.from_string(value).render(host) if isinstance(value, str)
                else value for name, value in defaults.items()}
    template = environment.from_string((ROLE / "templates/gateway.toml.j2").read_text())
    path = tmp_path / "gateway.toml"
    path.write_text(template.render({**host, **resolved, **variables}))
    return load_gateway_config(path)


def test_the_defaults_with_a_datacenter_make_a_gateway_other_sites_reach_at_the_host(
        tmp_path: Path) -> None:
    config = render(tmp_path, vmesh_gateway_datacenter="east")
    assert (config.datacenter, config.listen, config.wan_address) == (
        "east", "0.0.0.0:4180", "198.18.0.5")
    assert config.lan_address is None  # the listen address: its own site's agent checks there
    assert config.instance_id == "vmesh-gateway-gw1"
    assert config.drain == 20.0


def test_the_inventory_sets_its_addresses_port_and_drain(tmp_path: Path) -> None:
    config = render(tmp_path, vmesh_gateway_datacenter="east",
                    vmesh_gateway_listen="198.18.1.5:4181",
                    vmesh_gateway_wan_address="198.18.0.5:14180",
                    vmesh_gateway_lan_address="198.18.1.5", vmesh_gateway_drain="5s")
    assert (config.listen, config.wan_address, config.lan_address, config.drain) == (
        "198.18.1.5:4181", "198.18.0.5:14180", "198.18.1.5", 5.0)


def test_an_admin_port_is_written_only_when_the_inventory_gives_one(tmp_path: Path) -> None:
    assert render(tmp_path, vmesh_gateway_datacenter="east").admin_port is None
    assert render(tmp_path, vmesh_gateway_datacenter="east",
                  vmesh_gateway_admin_port=4191).admin_port == 4191
