"""The service file `vmesh join` writes is one the proxy loads; bad values are refused first."""

import tomllib

import pytest

from vm_mesh.config import ServiceConfig
from vm_mesh.errors import UserError
from vm_mesh.host.join import JoinRequest, service_file
from vm_mesh.schema import load


def test_written_file_loads_as_the_proxy_reads_it() -> None:
    text = service_file(JoinRequest("cart", 8080, "https://ca:8443", instance_id="cart-a",
                                    advertise="198.18.0.7", inbound="0.0.0.0:4143"))
    config = load(ServiceConfig, tomllib.loads(text))
    assert config.service == "cart" and config.app_port == 8080
    assert config.identity_url == "https://ca:8443" and config.instance == "cart-a"
    assert config.listen.advertise == "198.18.0.7" and config.discovery is None


def test_quotes_in_values_cannot_inject_settings() -> None:
    text = service_file(JoinRequest("cart", 8080, "https://ca",
                                    instance_id='cart-a"\napp_port = 1\n#'))
    assert tomllib.loads(text)["app_port"] == 8080


@pytest.mark.parametrize(
    ("request_", "where"),
    [(JoinRequest("Cart!", 8080, "https://ca"), "service"),
     (JoinRequest("cart", 0, "https://ca"), "app_port"),
     (JoinRequest("cart", 8080, "https://ca", inbound="nowhere"), "listen.inbound"),
     (JoinRequest("cart", 8080, "http://ca:8443"), "identity_url")],
)
def test_bad_values_are_refused_naming_the_setting(request_: JoinRequest, where: str) -> None:
    with pytest.raises(UserError, match=rf"^vmesh join: {where}: "):
        service_file(request_)
