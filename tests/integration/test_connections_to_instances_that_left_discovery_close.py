"""An instance that leaves discovery keeps no pooled connection from its peers: the caller's
proxy closes its idle ones on the endpoint update, so the departed instance's proxy sees its
open connections fall to none long before its idle timeout."""

from pathlib import Path

from tests.integration.mesh import Mesh, ProxyProcess, get_via, wait_until
from tests.integration.processes import start_backend


def open_connections(proxy: ProxyProcess) -> int:
    """The client connections `proxy` holds open now, as `/v1/stats` shows them (TCP_CONN)."""
    with proxy.admin() as admin:
        return admin.get("/v1/stats").json()["tcp_open"]


def test_the_idle_connection_to_an_instance_that_left_is_closed(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    web = start_backend("web")
    try:
        # its idle timeout far off: only the caller can close the pooled connection in time
        web_proxy = mesh.start_proxy("web", web.port, idle="300s")
        front = mesh.start_proxy("front", 1)
        assert get_via(front, "web").status_code == 200
        assert open_connections(web_proxy) == 1  # front's pooled connection, idle now

        mesh.instances = [i for i in mesh.instances if i["service"] != "web"]
        mesh.write_endpoints()  # web leaves discovery, but goes on running
        front.wait_for_log(lambda line: line.get("msg") == "endpoints updated"
                           and line.get("dst_service") == "web" and line["instances"] == [])

        wait_until(lambda: open_connections(web_proxy) == 0, within=10,
                   what="the departed instance's proxy holding no connection")
        assert get_via(front, "web").status_code == 503  # and no request goes there
    finally:
        mesh.stop()
        web.stop()
