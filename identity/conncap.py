"""The cap on the identity service's open connections, so that a flood cannot exhaust its
file descriptors and threads: at the cap it accepts nothing more until one closes."""

import logging
import threading

log = logging.getLogger("vmesh.identity")


class ConnectionCap:
    """At most `limit` connections open at once. `admit` is asked before each accept and
    `release` told when a connection closes.

    An episode at the cap begins when a connection has to wait for a place, and ends when a
    place frees with none waiting: each is logged once (`connections.at_cap`, then
    "accepting connections again") and counted in `episodes`, however many connections the
    flood holds in between."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the connection cap must be at least 1, not {limit}")
        self.limit = limit
        self.open = 0
        self.episodes = 0
        self._at_cap = False
        self._waiting = 0
        self._freed = threading.Condition()

    def admit(self, wait: float) -> bool:
        """Take a place for one more connection, waiting up to `wait` seconds for one to free;
        False when none did (the connection stays in the listen queue, not accepted)."""
        with self._freed:
            if self.open >= self.limit:
                if not self._at_cap:
                    self._at_cap = True
                    self.episodes += 1
                    log.warning("connection cap reached; accepting no more until one closes",
                                extra={"reason": "connections.at_cap",
                                       "max_connections": self.limit})
                self._waiting += 1
                try:
                    if not self._freed.wait_for(lambda: self.open < self.limit, timeout=wait):
                        return False
                finally:
                    self._waiting -= 1
            self.open += 1
            return True

    def release(self) -> None:
        """Give back the place of a connection that closed."""
        with self._freed:
            self.open -= 1
            self._freed.notify()
            if self._at_cap and not self._waiting:
                self._at_cap = False
                log.info("accepting connections again",
                         extra={"open": self.open, "max_connections": self.limit})
