"""`vmesh top` and `vmesh logs` name each source that fails, once, on stderr, and exit 1 when
no source answered, as `vmesh tap` and `vmesh stat` do."""

from __future__ import annotations

from tests.console.test_cli_twins_print_columns_and_json import vmesh
from tests.support import free_port
from vm_mesh import paths


def test_top_without_an_operator_certificate_says_so_and_fails(vmesh_root) -> None:
    address = f"127.0.0.1:{free_port()}"
    top = vmesh("top", "--no-local", "--admin", address, "--duration", "1")
    assert top.returncode == 1
    cert = paths.state_dir("operator") / "cert.pem"
    assert top.stderr == (f"vmesh: {address}: operator certificate {cert} not found (run "
                          "`vmesh identity operator NAME` or pass --cert/--key/--ca) "
                          "[admin.operator_cert_missing]\n")


def test_top_with_every_proxy_down_names_each_once_and_fails(start_admin) -> None:
    for name in ("api", "web"):
        start_admin(name).kill()  # their sockets are left: refused
    top = vmesh("top", "--duration", "2.5")  # long enough for retries
    assert top.returncode == 1
    assert sorted(top.stderr.splitlines()) == [
        f"vmesh: {name}: connection to {paths.admin_socket(name)} refused (proxy not running?) "
        "[admin.connect_refused]" for name in ("api", "web")]


def test_top_with_one_proxy_down_names_it_and_shows_the_others(start_admin) -> None:
    start_admin("api", rate=50)
    start_admin("web").kill()
    top = vmesh("top", "--duration", "2.5", "--json")
    assert top.returncode == 0, top.stderr
    assert top.stdout and top.stderr.count("[admin.connect_refused]") == 1
    assert top.stderr.startswith("vmesh: web: ")


def test_logs_with_every_proxy_down_names_each_and_fails(start_admin) -> None:
    for name in ("api", "web"):
        start_admin(name).kill()
    logs = vmesh("logs")
    assert logs.returncode == 1
    assert sorted(logs.stderr.splitlines()) == [
        f"vmesh: {name}: connection to {paths.admin_socket(name)} refused (proxy not running?) "
        "[admin.connect_refused]" for name in ("api", "web")]
    assert logs.stdout == ""
