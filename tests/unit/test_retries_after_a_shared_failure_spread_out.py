"""After a failure many proxies see at once (a Consul agent restarts, every watch on every host
fails together), their next tries spread over the whole backoff window ("full jitter", as in
AWS's "Exponential Backoff and Jitter") instead of all coming back at the same instant; the
window still doubles up to its cap, and no delay ever leaves it."""

import random
import statistics

from vm_mesh.backoff import doubled, full_jitter
from vm_mesh.discovery.consul import ConsulSettings, backoff_delay

PROXIES = 1000


def test_every_delay_stays_within_its_window() -> None:
    rng = random.Random(7)
    for doublings in (0, 1, 3, 10, 100_000):
        window = doubled(0.5, 30.0, doublings)
        delays = [full_jitter(0.5, 30.0, doublings, rng) for _ in range(PROXIES)]
        assert all(0.0 <= delay <= window for delay in delays)


def test_proxies_that_failed_together_come_back_spread_over_the_window() -> None:
    settings = ConsulSettings(backoff_min_s=0.5, backoff_max_s=30.0)
    for failures in (1, 4, 50):
        window = doubled(0.5, 30.0, failures - 1)
        delays = sorted(backoff_delay(failures, settings) for _ in range(PROXIES))
        assert delays[0] < window / 10 and delays[-1] > window * 9 / 10
        # a tenth of the window holds about a tenth of the proxies, never a crowd
        tenths = [sum(1 for d in delays if k * window / 10 <= d < (k + 1) * window / 10)
                  for k in range(10)]
        assert max(tenths) < PROXIES / 5, tenths


def test_the_window_doubles_up_to_the_cap() -> None:
    rng = random.Random(11)
    means = [statistics.fmean(full_jitter(0.5, 4.0, n, rng) for _ in range(PROXIES))
             for n in range(6)]
    for n, mean in enumerate(means):  # the mean of an even draw is half its window
        assert abs(mean - doubled(0.5, 4.0, n) / 2) < doubled(0.5, 4.0, n) / 10, means
    assert means[0] < means[1] < means[2] < means[3]


def test_no_failure_no_wait() -> None:
    assert backoff_delay(0, ConsulSettings()) == 0.0
