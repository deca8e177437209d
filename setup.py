"""Builds the proxy's request path as C extensions with mypyc; the rest stays pure Python.

The modules below carry every request (parsing, routing, balancing, policy, metrics, tap
events). mypyc compiles them from the same type-annotated source that mypy checks, which
cuts the proxy's CPU per request by about a fifth (README, "Measured"). Compiled
modules enforce their annotations at run time, so the test suite runs against them.

`VMESH_PURE_PYTHON=1` builds without compiling (a universal wheel, or a tree whose request
path py-spy and `bench/opcount.py` can see into). A module left out here has a reason in
the comment beside the list.
"""

import os

from setuptools import Extension, setup

# Not compiled: proxy/retrying.py, a generic dataclass, which mypyc rejects; proxy/rewatch.py,
# an async generator, which it does not compile.
COMPILED = [
    "proxy/accesslog.py",
    "proxy/authority.py",
    "proxy/authz.py",
    "proxy/balance.py",
    "proxy/breaker.py",
    "proxy/connection.py",
    "proxy/context.py",
    "proxy/continue_body.py",
    "proxy/detect.py",
    "proxy/downstream.py",
    "proxy/endpoints.py",
    "proxy/events.py",
    "proxy/failover.py",
    "proxy/feed.py",
    "proxy/http1.py",
    "proxy/inbound.py",
    "proxy/inbound_policy.py",
    "proxy/lazytimer.py",
    "proxy/metrics.py",
    "proxy/mirror.py",
    "proxy/normalize.py",
    "proxy/outbound.py",
    "proxy/outbound_policy.py",
    "proxy/policy_metrics.py",
    "proxy/relay.py",
    "proxy/retry.py",
    "proxy/route.py",
    "proxy/series.py",
    "proxy/shadow.py",
    "proxy/split.py",
    "proxy/stats.py",
    "proxy/tap.py",
    "proxy/timeouts.py",
    "proxy/tracecontext.py",
    "proxy/traffic.py",
    "proxy/upstream.py",
]


def extensions() -> list[Extension]:
    if os.environ.get("VMESH_PURE_PYTHON") == "1":
        return []
    from mypyc.build import mypycify

    return mypycify(COMPILED, opt_level="3", group_name="proxy_native")


setup(ext_modules=extensions())
