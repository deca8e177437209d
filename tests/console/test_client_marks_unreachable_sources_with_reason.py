"""The admin client against real admin API processes: answers, and reasons when it cannot."""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from console.client import OperatorCredentials
from console.collect import poll_all, poll_source
from console.sources import Source, default_sources
from identity import pki
from vm_mesh import paths


async def test_local_proxies_are_found_and_polled_over_their_sockets(start_admin) -> None:
    for name in ("api", "web"):
        start_admin(name)
    sources = await default_sources().list()
    assert [(s.name, s.kind) for s in sources] == [("api", "unix"), ("web", "unix")]
    polls = await poll_all(sources)
    assert all(p.ok and p.ready for p in polls)
    assert polls[0].stats is not None and polls[0].stats.service == "api"
    assert polls[0].certs is not None
    assert [c.kind for c in polls[0].certs.certs] == ["leaf", "issuer", "anchor"]
    assert polls[0].certs.identity == "spiffe://vmesh.local/svc/api"
    assert polls[0].endpoints[0].service == "store"
    assert abs(polls[0].server_date - datetime.now(UTC)) < timedelta(seconds=5)


async def test_killed_proxy_is_refused_and_missing_socket_is_named(start_admin) -> None:
    api = start_admin("api")
    api.kill()  # SIGKILL leaves the socket file behind, as a crashed proxy does
    refused = await poll_source(Source("api", "unix", str(api.socket)))
    assert (refused.ok, refused.reason) == (False, "admin.connect_refused")
    missing = await poll_source(Source("gone", "unix", str(paths.admin_socket("gone"))))
    assert (missing.ok, missing.reason) == (False, "admin.socket_missing")
    assert "gone.sock does not exist" in (missing.detail or "")


async def test_a_dead_source_does_not_delay_the_others(start_admin) -> None:
    start_admin("api")
    silent = Path(paths.run_dir() / "hang.sock")
    # A socket that accepts and never answers: the deadline bounds the poll.
    server = await asyncio.start_unix_server(lambda r, w: asyncio.sleep(3600), path=str(silent))
    async with server:
        sources = [Source("api", "unix", str(paths.admin_socket("api"))),
                   Source("hang", "unix", str(silent))]
        polls = await asyncio.gather(*(poll_source(s, deadline_s=1.0) for s in sources))
    assert polls[0].ok
    assert (polls[1].ok, polls[1].reason) == (False, "admin.timeout")


def _operator(tls_dir: Path, out: Path) -> OperatorCredentials:
    """An operator certificate signed by the same issuer as the remote proxy."""
    issuer = pki.CertifiedKey(pki.load_key((tls_dir / "issuer-key.pem").read_bytes()),
                              pki.load_certs((tls_dir / "issuer.pem").read_bytes())[0])
    key = pki.generate_key()
    cert = pki.issue_leaf(issuer, key.public_key(), spiffe_id="spiffe://vmesh.local/operator/ann",
                          common_name="ann", trust_domain="vmesh.local")
    pki.write_private(out / "key.pem", pki.key_pem(key))
    pki.write_file(out / "cert.pem", pki.cert_pem(cert, issuer.cert))
    pki.write_file(out / "bundle.pem", (tls_dir / "bundle.pem").read_bytes())
    return OperatorCredentials(out / "cert.pem", out / "key.pem", out / "bundle.pem")


async def test_remote_proxy_over_mutual_tls_with_operator_certificate(start_admin,
                                                                      tmp_path: Path) -> None:
    remote = start_admin("edge", tls=True)
    source = Source(f"127.0.0.1:{remote.port}", "tcp", f"127.0.0.1:{remote.port}", "flag")
    good = await poll_source(source, _operator(remote.tls_dir, tmp_path))
    assert good.ok and good.stats is not None and good.stats.service == "edge"

    absent = OperatorCredentials(tmp_path / "no.pem", tmp_path / "no.key", tmp_path / "no.ca")
    missing = await poll_source(source, absent)
    assert (missing.ok, missing.reason) == (False, "admin.operator_cert_missing")

    other_mesh = tmp_path / "other"
    other_mesh.mkdir()
    anchor = pki.create_anchor("vmesh.local")
    pki.write_file(other_mesh / "bundle.pem", pki.cert_pem(anchor.cert))
    wrong_ca = OperatorCredentials(tmp_path / "cert.pem", tmp_path / "key.pem",
                                   other_mesh / "bundle.pem")
    untrusted = await poll_source(source, wrong_ca)
    assert (untrusted.ok, untrusted.reason) == (False, "admin.tls_untrusted")


async def test_a_stopped_remote_proxy_reads_as_refused(start_admin, tmp_path: Path) -> None:
    remote = start_admin("edge", tls=True)
    address = f"127.0.0.1:{remote.port}"
    credentials = _operator(remote.tls_dir, tmp_path)
    remote.kill()
    poll = await poll_source(Source(address, "tcp", address, "flag"), credentials)
    assert (poll.ok, poll.reason) == (False, "admin.connect_refused")
    assert poll.detail == f"connection to {address} refused (proxy not running?)"
