"""Policy documents from Consul KV (`vmesh/policy/...`), watched with blocking queries.

Each key under the prefix holds one YAML file's worth of documents and is
validated exactly like a file; errors name the key (`consul:vmesh/policy/api`).
The consul index is handled as Consul's docs require: a result is no proof
of change, an index that goes backwards restarts from 0, the loop is
rate-limited with a token bucket (two queries at once, then one per
`query_interval_s` while every answer brings a change, as discovery's watch),
and failures back off so a flapping agent is not hammered.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import consul

from vm_mesh.backoff import full_jitter
from vm_mesh.blocking import in_own_thread
from vm_mesh.discovery.consul import log_refused_token
from vm_mesh.policy.files import CONSUL_PREFIX
from vm_mesh.token_bucket import TokenBucket

log = logging.getLogger("vmesh.policy")

PREFIX = "vmesh/policy/"
POLICY_RETRY_MIN_S = 1.0  # the backoff window after the first failed query; doubles to the max
POLICY_RETRY_MAX_S = 30.0

Texts = tuple[tuple[str, str], ...]


class ConsulPolicySource:
    """Reads the policy keys of one Consul agent."""

    def __init__(self, client: consul.Consul, prefix: str = PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self.index: int | None = None

    def fetch(self, wait: str = "30s") -> tuple[bool, Texts]:
        """Block until the keys may have changed; returns (index moved, texts by key)."""
        index, items = self.client.kv.get(self.prefix, recurse=True, index=self.index, wait=wait)
        index = max(int(index or 1), 1)
        moved = self.index is None or index != self.index
        self.index = 0 if self.index is not None and index < self.index else index
        return moved, texts_of(items)


def texts_of(items: list[dict[str, Any]] | None) -> Texts:
    """(name, YAML text) per key with a value, sorted by key (folders and empty keys skipped)."""
    texts = []
    for item in items or []:
        value = item.get("Value")
        if item["Key"].endswith("/") or not value:
            continue
        text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
        texts.append((CONSUL_PREFIX + item["Key"], text))
    return tuple(sorted(texts))


async def watch(
    source: ConsulPolicySource, on_change: Callable[[Texts], object], wait: str = "30s",
    query_interval_s: float = 1.0,
) -> None:
    """Call `on_change(texts)` whenever the keys change; at most two queries at once, then one
    per `query_interval_s` (TokenBucket); back off on errors (full jitter over a window
    doubling from 1 s to 30 s, so the proxies of every host do not come back together)."""
    failures = 0
    last: Texts | None = None
    pace = TokenBucket(query_interval_s, now=time.monotonic())
    while True:
        await asyncio.sleep(pace.delay(time.monotonic()))
        try:
            _, texts = await in_own_thread(source.fetch, wait, name="consul-policy")
        except (consul.ConsulException, OSError) as exc:
            delay = full_jitter(POLICY_RETRY_MIN_S, POLICY_RETRY_MAX_S, failures)
            failures += 1
            if isinstance(exc, consul.ACLPermissionDenied):
                log_refused_token(exc, f"read the keys under {source.prefix}", "retrying",
                                  retry_in_s=delay)
            else:
                log.warning("consul policy watch failed; retrying",
                            extra={"event": "policy_consul_error", "error": str(exc),
                                   "retry_in_s": delay})
            source.index = None
            await asyncio.sleep(delay)
            continue
        failures = 0
        if texts != last:
            last = texts
            on_change(texts)
