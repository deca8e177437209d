"""The one rule for a rate over a sliding window of whole seconds, shared by the proxy's
golden stats (`/v1/stats`) and the console's top table, so both show the same rps.

A window counts the whole seconds from `now - window_s` on. Something younger than
the window (a proxy just started, a table just opened) has seen only part of it:
its rate is taken over the time it has been counting, or the first requests of a
new proxy would read as a rate diluted by seconds it was not yet up.
"""

import math


def window_start(now: float, window_s: float) -> int:
    """The first whole second the window counts."""
    return math.ceil(now - window_s)


def rate_span(now: float, window_s: float, counting_since: float) -> float:
    """The seconds a windowed count is divided by: from the window's first whole second,
    or from `counting_since` if that is later; at least one."""
    return max(1.0, now - max(window_start(now, window_s), counting_since))
