"""`vmesh config check KIND FILE` judges a file as the process that reads it would, under any
name (Ansible's `validate:` hands it a temporary copy): exit 0 for a good one, exit 1 with
`file:line: reason` for a bad one."""

import subprocess
import sys
from pathlib import Path

import pytest


def check(kind: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vm_mesh", "config", "check", kind, str(path)],
                          capture_output=True, text=True, timeout=60)


GOOD = {
    "mesh": 'trust_domain = "vmesh.local"\n[discovery]\nbackend = "mdns"\n',
    "service": 'service = "api"\napp_port = 8080\n[listen]\ninbound = "0.0.0.0:4143"\n',
    "gateway": 'datacenter = "east"\nwan_address = "198.18.0.5"\n',
}
BAD = {
    "mesh": ('trust_domain = "vmesh.local"\n[tracing]\notlp_endpoint = "collector"\n',
             ":3: tracing.otlp_endpoint: 'collector' is not a URL"),
    "service": ('service = "api"\napp_port = 70000\n',
                ":2: app_port: Input should be less than or equal to 65535"),
    "gateway": ('datacenter = "east"\nwan_address = "198.18.0.5:x"\n',
                ":2: wan_address:"),
}


@pytest.mark.parametrize("kind", list(GOOD))
def test_a_good_file_passes_under_any_name(tmp_path: Path, kind: str) -> None:
    path = tmp_path / ".tmp_config_x1y2"
    path.write_text(GOOD[kind])
    result = check(kind, path)
    assert (result.returncode, result.stdout) == (0, f"{path}: a valid {kind} config\n")


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_file_fails_naming_file_line_and_reason(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "candidate"
    text, reason = BAD[kind]
    path.write_text(text)
    result = check(kind, path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"vmesh: {path}{reason}"), result.stderr


def test_a_missing_file_fails(tmp_path: Path) -> None:
    result = check("mesh", tmp_path / "absent.toml")
    expected = f"vmesh: {tmp_path}/absent.toml: no such file\n"
    assert (result.returncode, result.stderr) == (1, expected)


@pytest.mark.parametrize(("kind", "url", "reason"), [
    ("mesh", "http://ca.example:8443", "identity.url_not_https"),
    ("mesh", "https://:8443", "identity.url_invalid"),
    ("mesh", "https://[::1", "identity.url_invalid"),
    ("service", "http://ca.example:8443", "identity.url_not_https"),
])
def test_an_identity_url_the_client_would_refuse_is_refused_at_load(
        tmp_path: Path, kind: str, url: str, reason: str) -> None:
    """The proxy would only find out at its first renewal, hours later."""
    path = tmp_path / "candidate"
    path.write_text(GOOD[kind].replace("\n", f'\nidentity_url = "{url}"\n', 1))
    result = check(kind, path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"vmesh: {path}:2: identity_url: {reason}: {url} "), \
        result.stderr


def test_an_https_identity_url_passes(tmp_path: Path) -> None:
    path = tmp_path / "mesh.toml"
    path.write_text('identity_url = "https://ca.example:8443"\n')
    assert check("mesh", path).returncode == 0
