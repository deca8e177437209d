"""`vmesh join` against something that is not the identity service it needs (no URL, a
plain-HTTP URL, another HTTP server, an answer too large to be one, a service that stalls,
a CA whose issuer expired, an error page) fails in one line naming the URL and the reason,
exits non-zero, and leaves the host as it was: no certificate, no service file, no
mesh.toml. A renewal answered with more than an answer can be fails the same way and keeps
the files."""

import ssl
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from identity import castate, pki
from identity.client import MAX_ANSWER_BYTES
from tests.integration.hostile_identity import Reply, hostile_service, tls_of
from tests.integration.identity_service import running_identity_service, vmesh
from tests.integration.test_join_refusals_are_one_line import join, one_line, two_authorities

ERROR_PAGE = b"<html>\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body>\n</html>\n"


def ca_with_token(root: Path) -> tuple[Path, str, bytes]:
    """A CA under `root`: its directory, a token for api on vm1, and its published bundle."""
    vmesh(root, "identity", "init")
    token = vmesh(root, "identity", "token", "create", "--host", "vm1",
                  "--services", "api").stdout.strip()
    ca_dir = root / "var/lib/vmesh/identity"
    return ca_dir, token, (ca_dir / "bundle.pem").read_bytes()


def refused_and_untouched(host: Path, result, url: str) -> str:
    """The one line of a refused join, once it is known to name `url` and to have left
    `host` as it was."""
    line = refused_before_the_exchange(host, result, url)
    assert "this host was left as it was" in line
    return line


def refused_before_the_exchange(host: Path, result, url: str) -> str:
    """The one line of a join refused as it was planned (the service file it would write does
    not load), once it is known to name `url` and to have left `host` as it was."""
    assert result.returncode != 0
    line = one_line(result.stderr)
    assert url in line
    assert not (host / "var/lib/vmesh/api").exists()
    assert not (host / "etc/vmesh/services/api.toml").exists()
    assert not (host / "etc/vmesh/mesh.toml").exists()
    return line


def test_a_refused_join_writes_no_service_file_and_a_later_one_works(tmp_path: Path) -> None:
    ca_root, other_root = two_authorities(tmp_path)
    foreign = vmesh(other_root, "identity", "token", "create", "--host", "vm1",
                    "--services", "api").stdout.strip()
    token = vmesh(ca_root, "identity", "token", "create", "--host", "vm1",
                  "--services", "api").stdout.strip()
    host = tmp_path / "vm1"
    with running_identity_service(ca_root) as ca:
        refused = join(host, foreign, ca.url)
        assert "anchor pin mismatch" in refused_and_untouched(host, refused, ca.url)
        proxy = vmesh(host, "proxy", "run", "api", check=False)
        assert proxy.returncode != 0 and "api.toml" in proxy.stderr  # no half-set-up service
        joined = join(host, token, ca.url)
    assert joined.returncode == 0, joined.stderr
    assert (host / "etc/vmesh/services/api.toml").is_file()
    assert (host / "var/lib/vmesh/api/cert.pem").is_file()


def test_an_http_url_is_refused_before_the_token_is_sent(tmp_path: Path) -> None:
    _, token, bundle = ca_with_token(tmp_path / "ca")
    with hostile_service(Reply(bundle)) as (url, received):  # the real anchor, over plain HTTP
        result = join(tmp_path / "vm1", token, url)
    line = refused_before_the_exchange(tmp_path / "vm1", result, url)
    assert "identity_url: identity.url_not_https" in line
    assert received == []


@pytest.mark.parametrize("url", ["https://[::1", "https://127.0.0.1:99999", "https://:8443"])
def test_an_identity_url_that_is_not_one_is_named(tmp_path: Path, url: str) -> None:
    _, token, _ = ca_with_token(tmp_path / "ca")
    result = join(tmp_path / "vm1", token, url)
    line = refused_before_the_exchange(tmp_path / "vm1", result, url)
    assert "identity_url: identity.url_invalid" in line


@pytest.mark.parametrize(("reply", "reason"), [
    (Reply(ERROR_PAGE, status=404), "identity.bundle_unavailable"),
    (Reply(ERROR_PAGE), "identity.bundle_invalid"),
])
def test_an_https_server_that_is_not_an_identity_service(tmp_path: Path, reply: Reply,
                                                         reason: str) -> None:
    _, token, _ = ca_with_token(tmp_path / "ca")
    ca_dir, _, _ = ca_with_token(tmp_path / "other")
    with hostile_service(reply, tls=tls_of(ca_dir)) as (url, received):
        result = join(tmp_path / "vm1", token, url)
    assert reason in refused_and_untouched(tmp_path / "vm1", result, url)
    assert received == []


def test_an_answer_to_the_join_over_the_limit_is_refused(tmp_path: Path) -> None:
    ca_dir, token, bundle = ca_with_token(tmp_path / "ca")
    flood = Reply(b'{"certificate": "' + b"A" * (4 * MAX_ANSWER_BYTES) + b'"}')
    with hostile_service(Reply(bundle), flood, tls=tls_of(ca_dir)) as (url, received):
        result = join(tmp_path / "vm1", token, url)
    assert "identity.answer_too_large" in refused_and_untouched(tmp_path / "vm1", result, url)
    assert len(received) == 1


def test_an_error_page_from_the_service_is_one_line(tmp_path: Path) -> None:
    ca_dir, token, bundle = ca_with_token(tmp_path / "ca")
    page = Reply(ERROR_PAGE, status=502)
    with hostile_service(Reply(bundle), page, tls=tls_of(ca_dir)) as (url, _):
        result = join(tmp_path / "vm1", token, url)
    line = refused_and_untouched(tmp_path / "vm1", result, url)
    assert "http.502" in line and "502 Bad Gateway" in line


def test_a_service_that_stalls_is_given_up_on(tmp_path: Path) -> None:
    ca_dir, token, bundle = ca_with_token(tmp_path / "ca")
    with hostile_service(Reply(bundle, drip_s=0.5), tls=tls_of(ca_dir)) as (url, received):
        result = join(tmp_path / "vm1", token, url)
    assert "identity.timeout" in refused_and_untouched(tmp_path / "vm1", result, url)
    assert received == []


def tls_of_a_service_outliving_its_issuer(ca_dir: Path) -> ssl.SSLContext:
    """What an identity service started before its CA's issuer expired still presents (its
    certificate from then, signed by that issuer)."""
    ca = castate.load(ca_dir)
    key = pki.generate_key()
    then = ca.active.cert.not_valid_after_utc - timedelta(hours=2)
    cert = pki.issue_leaf(ca.active, key.public_key(), spiffe_id=None,
                          common_name="vmesh identity service", trust_domain=ca.trust_domain,
                          lifetime=timedelta(hours=1), ip_addresses=["127.0.0.1"], now=then)
    (ca_dir / "served.pem").write_bytes(pki.cert_pem(cert, ca.active.cert))
    (ca_dir / "served.key").write_bytes(pki.key_pem(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(ca_dir / "served.pem", ca_dir / "served.key")
    return context


def test_a_ca_whose_issuer_expired_is_named_as_such(tmp_path: Path) -> None:
    root = tmp_path / "ca"
    ca_dir = root / "var/lib/vmesh/identity"
    castate.init(ca_dir, "vmesh.local",
                 now=pki.utcnow() - timedelta(days=400))  # the issuer expired 35 days ago
    token = vmesh(root, "identity", "token", "create", "--host", "vm1",
                  "--services", "api").stdout.strip()
    bundle = (ca_dir / "bundle.pem").read_bytes()
    with hostile_service(Reply(bundle),
                         tls=tls_of_a_service_outliving_its_issuer(ca_dir)) as (url, received):
        result = join(tmp_path / "vm1", token, url)
    line = refused_and_untouched(tmp_path / "vm1", result, url)
    assert "identity.certificate_expired" in line and "vmesh identity rotate" in line
    assert received == []


def test_an_answer_to_a_renewal_over_the_limit_is_refused_and_the_files_kept(
    tmp_path: Path,
) -> None:
    ca_dir, token, bundle = ca_with_token(tmp_path / "ca")
    host = tmp_path / "vm1"
    with running_identity_service(tmp_path / "ca") as ca:
        assert join(host, token, ca.url).returncode == 0
    leaf_dir = host / "var/lib/vmesh/api"
    kept = {path.name: path.read_bytes() for path in leaf_dir.glob("*.pem")}
    flood = Reply(b'{"certificate": "' + b"A" * (4 * MAX_ANSWER_BYTES) + b'"}')
    with hostile_service(Reply(bundle), flood, tls=tls_of(ca_dir)) as (url, received):
        renewal = subprocess.run([sys.executable, "-m", "identity.renew", url, str(leaf_dir)],
                                 capture_output=True, text=True, timeout=60)
    assert renewal.returncode != 0 and len(received) == 1
    assert "identity.answer_too_large" in one_line(renewal.stderr)
    assert {path.name: path.read_bytes() for path in leaf_dir.glob("*.pem")} == kept
