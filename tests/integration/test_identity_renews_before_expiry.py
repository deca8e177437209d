"""A proxy's leaf is renewed before it expires, and survives the identity service going away."""

import asyncio
import logging
import time
from pathlib import Path

import pytest

from identity.client import LeafFiles, obtain
from identity.renewer import Renewer
from tests.integration.identity_service import running_identity_service, vmesh


async def _wait_for(predicate, within: float) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def test_renewal_has_no_gap_and_keeps_old_leaf_when_ca_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    vmesh(tmp_path, "identity", "init")
    leaf_dir = tmp_path / "api"
    files = LeafFiles(leaf_dir)
    with running_identity_service(tmp_path, "--leaf-ttl", "8s") as service:
        token = vmesh(
            tmp_path, "identity", "token", "create", "--host", "h1", "--services", "api"
        ).stdout.strip()

        async def renew_once_then_lose_the_ca() -> tuple:
            first = await obtain(service.url, token, host="h1", service="api", directory=leaf_dir)
            renewed = []
            task = asyncio.create_task(
                Renewer(service.url, leaf_dir, lambda: renewed.append(time.time())).run()
            )
            await _wait_for(lambda: renewed, within=20)
            second = files.leaf()
            service.stop()
            with caplog.at_level(logging.WARNING, logger="vmesh.identity.client"):
                await _wait_for(
                    lambda: any("renewal failed" in r.message for r in caplog.records), within=20
                )
            task.cancel()
            return first, second, renewed[0]

        first, second, renewed_at = asyncio.run(renew_once_then_lose_the_ca())

    assert second.serial_number != first.serial_number
    first_life = first.not_valid_after_utc.timestamp() - first.not_valid_before_utc.timestamp()
    # renewed after most of the first leaf's life, yet before it expired: no gap
    assert renewed_at > first.not_valid_before_utc.timestamp() + 0.5 * first_life
    assert renewed_at < first.not_valid_after_utc.timestamp()
    assert files.leaf().serial_number == second.serial_number  # kept while the CA is down
    assert caplog.records[-1].levelno >= logging.WARNING


def test_a_renewed_leaf_that_does_not_load_is_renewed_again_with_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    vmesh(tmp_path, "identity", "init")
    leaf_dir = tmp_path / "api"
    with running_identity_service(tmp_path) as service:
        token = vmesh(
            tmp_path, "identity", "token", "create", "--host", "h1", "--services", "api"
        ).stdout.strip()

        async def renew_while_the_proxy_keeps_its_old_leaf() -> list[float]:
            leaf = await obtain(service.url, token, host="h1", service="api", directory=leaf_dir)
            loaded = (leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp())
            past_renewal = loaded[0] + 0.8 * (loaded[1] - loaded[0])
            task = asyncio.create_task(Renewer(
                service.url, leaf_dir, clock=lambda: past_renewal, validity=lambda: loaded,
            ).run())
            with caplog.at_level(logging.ERROR, logger="vmesh.identity.client"):
                await _wait_for(lambda: len(unloaded(caplog)) >= 3, within=60)
            task.cancel()
            return [record.retry_in_s for record in unloaded(caplog)[:3]]

        delays = asyncio.run(renew_while_the_proxy_keeps_its_old_leaf())
    # each retry anywhere up to its ceiling (jitter), the ceiling doubling from 1 s
    ceilings = [1.0, 2.0, 4.0]
    assert all(0.0 <= delay <= top for delay, top in zip(delays, ceilings, strict=True))


def unloaded(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if "did not load" in record.message]
