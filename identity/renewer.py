"""The proxy's renewal loop: wait until ~70 % of the leaf's life, renew, repeat, for as long as
it runs; while the identity service is unreachable it keeps serving on the current leaf, and
the warnings grow louder as expiry nears.

Waiting needs only the leaf's validity, which the proxy passes from what the stdlib's `ssl`
decoded; `identity.client` (and with it `cryptography`, which makes the new key and CSR) is
imported when a renewal is due, so an idle proxy never loads it before then.
"""

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from identity.renewal import expiry_level, renewal_time, retry_delay

# the logger of identity.client, where the loop lived: log consumers filter on it
log = logging.getLogger("vmesh.identity.client")

# a leaf's (not_before, not_after) in epoch seconds
Validity = tuple[float, float]


class Renewer:
    """Keeps a service's leaf renewed at ~70 % of its lifetime, for as long as it runs.

    `validity` gives the current leaf's validity for the first wait (default: read from
    `directory`/cert.pem, which loads `cryptography`); later waits use the renewed leaf.
    `on_renewed` gets the renewed leaf (a `cryptography` certificate).
    """

    def __init__(
        self,
        url: str,
        directory: Path,
        on_renewed: Callable[[Any], None] | None = None,
        clock: Callable[[], float] = time.time,
        validity: Callable[[], Validity] | None = None,
    ) -> None:
        self.url = url
        self.directory = directory
        self.on_renewed = on_renewed
        self.clock = clock
        self.validity = validity or self._validity_on_disk

    async def run(self) -> None:
        """Renew forever; cancel the task to stop."""
        not_before, not_after = self.validity()
        while True:
            await asyncio.sleep(max(0.0, renewal_time(not_before, not_after) - self.clock()))
            renewed = await self._renew(not_before, not_after)
            if self.on_renewed:
                self.on_renewed(renewed)
            not_before = renewed.not_valid_before_utc.timestamp()
            not_after = renewed.not_valid_after_utc.timestamp()

    async def _renew(self, not_before: float, not_after: float) -> Any:
        """Renew until it works, backing off; the renewed leaf."""
        import httpx

        from identity import client

        attempt = 0
        while True:
            try:
                return await client.renew(self.url, self.directory)
            except (httpx.HTTPError, client.IdentityRefused, OSError, ssl.SSLError) as exc:
                now = self.clock()
                log.log(
                    expiry_level(now, not_before, not_after),
                    "certificate renewal failed; still serving on the current leaf",
                    extra={
                        "error": str(exc),
                        "expires_in_s": round(not_after - now, 1),
                        "identity_service": self.url,
                    },
                )
                await asyncio.sleep(retry_delay(attempt, now, not_after))
                attempt += 1

    def _validity_on_disk(self) -> Validity:
        from identity.client import LeafFiles

        leaf = LeafFiles(self.directory).leaf()
        return leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp()
