"""`vmesh systemd render` writes units that `systemd-analyze verify` accepts.

systemd-analyze checks that ExecStart's binary exists, so the units are
rendered with this checkout's `vmesh`; rendered with the default
/opt/vmesh path on a machine without it, verify must say so (the check is real).
"""

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import require_tool

VMESH = str(Path(sys.executable).with_name("vmesh"))


def render(output: Path, *extra: str) -> None:
    done = subprocess.run([VMESH, "systemd", "render", "--output", str(output), *extra],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert str(output / "vmesh-proxy@.service") in done.stdout


def verify(analyze: str, *units: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([analyze, "verify", *map(str, units)],
                          capture_output=True, text=True, timeout=120)


def test_rendered_units_verify_cleanly(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    render(tmp_path, "--vmesh-bin", VMESH, "--drain", "45")
    # a template is verified through an instance of it
    instance = tmp_path / "vmesh-proxy@api.service"
    shutil.copy(tmp_path / "vmesh-proxy@.service", instance)
    done = verify(analyze, instance, tmp_path / "vmesh-identity.service")
    assert done.returncode == 0 and done.stderr == "", done.stderr

    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(instance)
    service = unit["Service"]
    assert service["ExecStart"] == f"{VMESH} proxy run %i"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert service["TimeoutStopSec"] == "55s"  # the 45 s drain and a margin before SIGKILL
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "yes"
    assert service["StateDirectory"] == "vmesh/%i" and service["User"] == "vmesh"


def test_the_cert_helper_unit_runs_as_the_program_it_certifies(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    render(tmp_path, "--vmesh-bin", VMESH)
    instance = tmp_path / "vmesh-cert-helper@prometheus.service"
    shutil.copy(tmp_path / "vmesh-cert-helper@.service", instance)
    done = verify(analyze, instance)
    assert done.returncode == 0 and done.stderr == "", done.stderr

    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(instance)
    service = unit["Service"]
    assert service["ExecStart"] == f"{VMESH} cert-helper %i"
    assert (service["User"], service["StateDirectory"]) == ("%i", "vmesh/%i")
    assert service["EnvironmentFile"] == "-/etc/vmesh/cert-helper/%i.env"  # VMESH_JOIN_TOKEN
    # the proxies' /run/vmesh stays theirs (a RuntimeDirectory would hand it to %i), and
    # SIGHUP, which the helper does not handle, is never sent
    assert "RuntimeDirectory" not in service and "ExecReload" not in service
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "yes"


def test_the_gateway_unit_runs_the_gateway(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    render(tmp_path, "--vmesh-bin", VMESH)
    done = verify(analyze, tmp_path / "vmesh-gateway.service")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(tmp_path / "vmesh-gateway.service")
    service = unit["Service"]
    assert service["ExecStart"] == f"{VMESH} gateway run"
    assert service["ProtectSystem"] == "strict" and service["User"] == "vmesh"


def test_verify_reports_a_missing_vmesh_binary(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    missing = tmp_path / "no-such-venv" / "vmesh"
    render(tmp_path, "--vmesh-bin", str(missing))
    done = verify(analyze, tmp_path / "vmesh-identity.service")
    assert done.returncode != 0
    assert f"Command {missing} is not executable" in done.stderr
