"""A refused admin request's log line keeps only the start of its path: anyone who reaches
the admin port may be refused, and each refusal is a line in the proxy's log ring (2,000
lines), which must not keep the 50 kB a client chose to send 2,000 times over."""

import asyncio
import logging
from pathlib import Path

from proxy.admin import MAX_LOGGED_PATH
from tests.integration.admin_support import local_admin


async def test_a_refused_request_logs_only_the_start_of_a_long_path(tmp_path: Path) -> None:
    async with local_admin(tmp_path) as admin:
        logger = logging.getLogger("vmesh.admin")
        logger.addHandler(admin.obs.logs)
        level = logger.level
        logger.setLevel(logging.INFO)
        try:
            reader, writer = await asyncio.open_unix_connection(str(admin.socket_path))
            long_path = "/" + "a" * 50_000
            writer.write(f"GET {long_path} HTTP/1.1\r\nHost: admin\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            writer.close()
        finally:
            logger.removeHandler(admin.obs.logs)
            logger.setLevel(level)
    assert head.startswith(b"HTTP/1.1 404 ")
    (refused,) = [line for line in admin.obs.logs.recent("info")
                  if line.get("reason") == "admin.not_found"]
    assert refused["path"] == long_path[:MAX_LOGGED_PATH] + "…"
