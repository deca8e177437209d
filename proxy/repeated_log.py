"""A repeated event logged once per period instead of every time it happens.

The proxy logs the first request it refuses for a new service while its destinations are
full, and the gateway the first connection it refuses for each reason; the repeats within the
period are only counted, and the period's end says how many there were. The caller ends
periods (the proxy's watch sweep, the gateway's timer), so this holds no clock; counters in
metrics stay exact whatever is logged.
"""


class RepeatedLog:
    """Per key (a reason): whether an occurrence is the first of its period, and how many
    were not logged since. Holds one counter per key whose period is open."""

    def __init__(self) -> None:
        self._unlogged: dict[str, int] = {}

    def first(self, key: str) -> bool:
        """True for the first occurrence of `key` in its period (log it, and end the period
        later with `close`); False for a repeat, which is counted."""
        unlogged = self._unlogged.get(key)
        if unlogged is None:
            self._unlogged[key] = 0
            return True
        self._unlogged[key] = unlogged + 1
        return False

    def close(self, key: str) -> int:
        """End the period of `key`: the occurrences not logged in it (0 when none, or when no
        period was open). The next occurrence is logged again."""
        return self._unlogged.pop(key, 0)

    def open_keys(self) -> list[str]:
        """The keys whose period is open."""
        return list(self._unlogged)
