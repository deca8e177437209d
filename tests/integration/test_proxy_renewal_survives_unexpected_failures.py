"""A proxy's renewal never ends while the proxy runs: a failure nobody planned for (here the
proxy is out of file descriptors when its renewal is due, so the renewal's child cannot even
start) is logged at error level with its cause, counted in `/v1/certs`, and the renewal is
tried again until it works."""

import resource
from pathlib import Path

from tests.integration.identity_service import joined_proxy


def test_a_renewal_that_fails_unexpectedly_is_logged_and_tried_again(tmp_path: Path) -> None:
    with joined_proxy(tmp_path, "20s") as proxy:
        with proxy.admin() as admin:
            first = admin.get("/v1/certs").json()["chain"][0]["serial"]
        limits = resource.prlimit(proxy.proc.pid, resource.RLIMIT_NOFILE)
        # no new descriptor for the proxy, as when its connections have used them all up
        resource.prlimit(proxy.proc.pid, resource.RLIMIT_NOFILE, (0, limits[1]))
        try:
            failed = proxy.wait_for_log(
                lambda line: line.get("msg", "").startswith("certificate renewal failed"),
                within=30,
            )
        finally:
            resource.prlimit(proxy.proc.pid, resource.RLIMIT_NOFILE, limits)
        renewed = proxy.wait_for_log(lambda line: line.get("msg") == "certificate renewed",
                                     within=20)
        with proxy.admin() as admin:
            certs = admin.get("/v1/certs").json()

    assert failed["level"] == "error"
    assert "Too many open files" in failed["error"]
    assert renewed["serial"] != first
    assert certs["chain"][0]["serial"] == renewed["serial"]
    assert certs["renewal_failures"] >= 1
