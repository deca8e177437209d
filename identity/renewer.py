"""The proxy's renewal loop: wait until ~70 % of the leaf's life, renew, repeat, for as long as
it runs; while the identity service is unreachable it keeps serving on the current leaf, and
the warnings grow louder as expiry nears.

Waiting needs only the leaf's validity, which the proxy passes from what the stdlib's `ssl`
decoded. Each renewal runs in a child process (`python -m identity.renew`), so the new key,
the CSR and `cryptography` never enter the proxy's own process.
"""

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from identity.renewal import expiry_level, renewal_time, retry_delay

# the logger of identity.client, where the loop lived: log consumers filter on it
log = logging.getLogger("vmesh.identity.client")

RENEW_TIMEOUT_S = 60.0  # for one attempt, child start-up included

# a leaf's (not_before, not_after) in epoch seconds
Validity = tuple[float, float]


class Renewer:
    """Keeps a service's leaf renewed at ~70 % of its lifetime, for as long as it runs.

    `validity` gives the current leaf's validity (default: read from `directory`/cert.pem,
    which loads `cryptography`); it is asked again after each renewal, once `on_renewed`
    (say, a reload of the files) has run.
    """

    def __init__(
        self,
        url: str,
        directory: Path,
        on_renewed: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.time,
        validity: Callable[[], Validity] | None = None,
    ) -> None:
        self.url = url
        self.directory = directory
        self.on_renewed = on_renewed
        self.clock = clock
        self.validity = validity or self._validity_on_disk
        # when the next attempt to renew is due (epoch seconds; past while one is under way),
        # None until `run` has scheduled the first
        self.next_renewal: float | None = None

    async def run(self) -> None:
        """Renew forever; cancel the task to stop."""
        not_before, not_after = self.validity()
        unloaded = 0  # renewals in a row whose new leaf did not load
        while True:
            renew_at = renewal_time(not_before, not_after)
            log.info("certificate renewal scheduled",
                     extra={"renew_at": renew_at,
                            "in_s": round(max(0.0, renew_at - self.clock()), 1)})
            await self._until(renew_at)
            await self._renew(not_before, not_after)
            if self.on_renewed:
                self.on_renewed()
            renewed = self.validity()
            if renewed == (not_before, not_after):  # stored, but not loaded: back off
                delay = retry_delay(unloaded, self.clock(), not_after)
                unloaded += 1
                log.error("certificate renewed, but the new leaf did not load; renewing again "
                          "later", extra={"directory": str(self.directory),
                                          "retry_in_s": round(delay, 1)})
                await self._until(self.clock() + delay)
            else:
                unloaded = 0
            not_before, not_after = renewed

    async def _renew(self, not_before: float, not_after: float) -> None:
        """Renew until it works, backing off."""
        attempt = 0
        while (failure := await self._renew_in_child()) is not None:
            now = self.clock()
            log.log(
                expiry_level(now, not_before, not_after),
                "certificate renewal failed; still serving on the current leaf",
                extra={
                    "error": failure,
                    "expires_in_s": round(not_after - now, 1),
                    "identity_service": self.url,
                },
            )
            await self._until(now + retry_delay(attempt, now, not_after))
            attempt += 1

    async def _until(self, when: float) -> None:
        """Wait until `when` (epoch seconds), the next renewal meanwhile."""
        self.next_renewal = when
        await asyncio.sleep(max(0.0, when - self.clock()))

    async def _renew_in_child(self) -> str | None:
        """One renewal by `python -m identity.renew`; None when it worked, else why not."""
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "identity.renew", self.url, str(self.directory),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(child.communicate(), RENEW_TIMEOUT_S)
        except TimeoutError:
            return f"the renewal did not finish within {RENEW_TIMEOUT_S:g} s"
        finally:
            if child.returncode is None:  # timed out, or the proxy is stopping
                child.kill()
        if child.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            return lines[-1] if lines else f"the renewal exited with {child.returncode}"
        log.info("certificate renewed", extra=json.loads(out))
        return None

    def _validity_on_disk(self) -> Validity:
        from identity.client import LeafFiles

        leaf = LeafFiles(self.directory).leaf()
        return leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp()
