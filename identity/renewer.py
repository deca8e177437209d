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
from dataclasses import dataclass
from pathlib import Path

from identity.renewal import expiry_level, renewal_time, retry_delay

# the logger of identity.client, where the loop lived: log consumers filter on it
log = logging.getLogger("vmesh.identity.client")

RENEW_TIMEOUT_S = 60.0  # for one attempt, child start-up included

# a leaf's (not_before, not_after) in epoch seconds
Validity = tuple[float, float]


@dataclass(frozen=True, slots=True)
class _Failure:
    """Why one attempt to renew failed."""

    reason: str  # one line
    stored: bool = False  # the new leaf was stored, but did not load
    unexpected: Exception | None = None  # an error nobody planned for, logged with its traceback


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
        self.failures = 0  # attempts that failed since `run` began

    async def run(self) -> None:
        """Renew forever; cancel the task to stop. Nothing else stops it: a failure of any
        kind (the CA away, a renewed leaf that does not load, the host out of resources, a
        bug) is logged, counted in `failures` and tried again, backing off."""
        # Outside the retry loop, as it does not fail in practice: the proxy gives the validity of
        # the leaf it holds in memory (it does not start without one, nor ever unloads it); the
        # cert helper reads the file `keep` has just read (a failure there ends the helper, and
        # its unit restarts it). Renewed leaves are read under supervision (`_attempt`).
        current = self.validity()
        due = self._scheduled(current)
        failed = 0  # attempts failed in a row
        while True:
            await self._until(due)
            outcome = await self._attempt(current)
            if isinstance(outcome, _Failure):
                now = self.clock()
                delay = retry_delay(failed, now, current[1])
                failed += 1
                self.failures += 1
                self._log_failure(outcome, now, current, delay)
                due = now + delay
            else:
                current, failed = outcome, 0
                due = self._scheduled(current)

    def _scheduled(self, validity: Validity) -> float:
        """When to renew a newly loaded leaf (~70 % into its life), logged."""
        renew_at = renewal_time(*validity)
        log.info("certificate renewal scheduled",
                 extra={"renew_at": renew_at,
                        "in_s": round(max(0.0, renew_at - self.clock()), 1)})
        return renew_at

    async def _attempt(self, current: Validity) -> Validity | _Failure:
        """Renew once and load the new leaf: its validity, else why not. Raises nothing but
        cancellation: whatever else goes wrong is a failure to try again."""
        try:
            failure = await self._renew_in_child()
            if failure is not None:
                return _Failure(failure)
            if self.on_renewed:
                self.on_renewed()
            renewed = self.validity()
        except Exception as exc:  # renewal must outlive whatever happens to one attempt
            return _Failure(f"{type(exc).__name__}: {exc}", unexpected=exc)
        if renewed == current:  # stored, but not loaded
            return _Failure("the new leaf did not load", stored=True)
        return renewed

    def _log_failure(self, failure: _Failure, now: float, current: Validity,
                     delay: float) -> None:
        retry_in_s = round(delay, 1)
        if failure.stored:
            log.error("certificate renewed, but the new leaf did not load; renewing again "
                      "later", extra={"directory": str(self.directory), "retry_in_s": retry_in_s})
            return
        level = expiry_level(now, *current)
        log.log(
            max(level, logging.ERROR) if failure.unexpected else level,
            "certificate renewal failed; still serving on the current leaf",
            exc_info=failure.unexpected,
            extra={
                "error": failure.reason,
                "expires_in_s": round(current[1] - now, 1),
                "identity_service": self.url,
                "retry_in_s": retry_in_s,
            },
        )

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
