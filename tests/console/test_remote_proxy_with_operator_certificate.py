"""A remote proxy over mutual TLS, with the operator certificate `vmesh identity operator` wrote."""

import json

from tests.console.test_cli_twins_print_columns_and_json import vmesh
from vm_mesh import paths


def test_operator_reads_stats_and_tap_of_a_remote_proxy(start_admin, vmesh_root) -> None:
    assert vmesh("identity", "init").returncode == 0
    issued = vmesh("identity", "operator", "ann")
    assert issued.returncode == 0, issued.stderr
    remote = start_admin("edge", tls=True, rate=50, ca_dir=paths.state_dir("identity"))
    address = f"127.0.0.1:{remote.port}"

    stat = vmesh("stat", "--no-local", "--admin", address, "--json")
    assert stat.returncode == 0, stat.stderr
    assert [json.loads(line)["name"] for line in stat.stdout.splitlines()] == ["edge"]

    tap = vmesh("tap", "--no-local", "--admin", address, "--json", "--max", "3")
    assert tap.returncode == 0, tap.stderr
    assert [json.loads(line)["proxy"] for line in tap.stdout.splitlines()] == [address] * 3


def test_a_service_certificate_is_refused_the_operator_only_tap(start_admin, vmesh_root) -> None:
    vmesh("identity", "init")
    remote = start_admin("edge", tls=True, ca_dir=paths.state_dir("identity"))
    other = start_admin("other", tls=True, ca_dir=paths.state_dir("identity"))
    address = f"127.0.0.1:{remote.port}"
    # A service's own leaf may read stats (any mesh identity) but not tap (operators only).
    files = other.tls_dir
    as_service = ["--no-local", "--admin", address, "--cert", str(files / "cert.pem"),
                  "--key", str(files / "key.pem"), "--ca", str(files / "bundle.pem")]
    assert vmesh("stat", *as_service).returncode == 0
    tap = vmesh("tap", *as_service, "--max", "1")
    assert tap.returncode == 1
    assert "/v1/tap answered 403: " in tap.stderr and "[admin.operator_only]" in tap.stderr


def test_proxies_listed_in_a_static_discovery_file_are_polled(start_admin, vmesh_root) -> None:
    vmesh("identity", "init")
    vmesh("identity", "operator", "ann")
    edges = [start_admin(name, tls=True, ca_dir=paths.state_dir("identity"))
             for name in ("edge-a", "edge-b")]
    endpoints = vmesh_root / "endpoints.toml"
    endpoints.write_text("".join(
        f'[[instance]]\nservice = "{p.name}"\nid = "{p.name}-1"\naddress = "127.0.0.1"\n'
        f"port = 1\nadmin_port = {p.port}\n" for p in edges
    ) + '[[instance]]\nservice = "no-admin"\naddress = "127.0.0.1"\nport = 2\n')
    stat = vmesh("stat", "--no-local", "--discover", str(endpoints), "--json")
    assert stat.returncode == 0, stat.stderr
    assert sorted(json.loads(x)["name"] for x in stat.stdout.splitlines()) == ["edge-a", "edge-b"]

    endpoints.write_text('[[instance]]\nservice = "broken"\n')
    broken = vmesh("stat", "--no-local", "--discover", str(endpoints))
    assert broken.returncode == 1
    assert f"static {endpoints}: ValueError: instance #1: missing or invalid" in broken.stderr
