"""A request whose handler fails for a reason of the admin API's own (a bug) gets a 500 with
a stable reason and a closed connection; the failure is in the proxy's log once, with its
cause, and the server goes on answering."""

import gc
import json
import logging
from pathlib import Path

from tests.integration.admin_support import FixedProxyFacts, local_admin


class _TornEndpoints(FixedProxyFacts):
    """A proxy whose endpoint table cannot be read."""

    def endpoints(self) -> dict:
        raise RuntimeError("endpoint table torn")


async def test_a_failing_handler_answers_500_once_logged(tmp_path: Path) -> None:
    async with local_admin(tmp_path, _TornEndpoints()) as admin:
        root = logging.getLogger()  # where the proxy keeps its log ring (proxy.server)
        root.addHandler(admin.obs.logs)
        try:
            async with admin.client() as client:
                failed = await client.get("/v1/endpoints")
                gc.collect()  # a task that died with its exception unread is reported now
                ready = await client.get("/ready")
                logs = await client.get("/v1/logs", params={"level": "error"})
        finally:
            root.removeHandler(admin.obs.logs)
    assert failed.status_code == 500
    assert failed.json()["error"] == "admin.internal_error"
    assert failed.headers["connection"] == "close"
    assert ready.status_code == 200
    errors = [json.loads(line) for line in logs.text.splitlines()]
    assert len(errors) == 1
    assert errors[0]["reason"] == "admin.internal_error"
    assert errors[0]["path"] == "/v1/endpoints"
    assert errors[0]["error"] == "RuntimeError: endpoint table torn"
