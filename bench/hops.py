"""Where a request's time goes at c=1, hop by hop, read off the packets on loopback.

`bench/compare.py --hops` runs this for each 2-hop path after its measured rounds:
one wrk connection sends requests one at a time while tcpdump stamps every data
segment, and each request's six segments (client -> front proxy -> back proxy ->
app, and back) give five gaps, one per hop and direction. A gap is what one
process took to pass the message on: waking up (on a small VM, waking a process
whose core sleeps costs tens of microseconds), reading, its own work, writing.
The kernel stamps the packets, so nothing is added to the proxies themselves.
"""

import itertools
import re
import statistics
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass

GAPS = (
    "front proxy, request",
    "back proxy, request",
    "app",
    "back proxy, response",
    "front proxy, response",
)

# `tcpdump -tt -n -q` prints `<time> IP 127.0.0.1.<port> > 127.0.0.1.<port>: tcp <length>`
_SEGMENT = re.compile(r"^(\d+\.\d+) IP [\d.]+\.(\d+) > [\d.]+\.(\d+): tcp (\d+)$")


@dataclass(frozen=True)
class Ports:
    """The listening ports of one 2-hop path: front proxy, back proxy (mTLS), app."""

    front: int
    back: int
    app: int


def request_gaps(lines: Iterable[str], ports: Ports) -> list[list[float]]:
    """Each complete request's five gaps in microseconds, from tcpdump's lines.

    A request is the six data segments from the one that reaches the front proxy to
    the one the front proxy sends back; requests that are cut off by the start or the
    end of the capture, or that took more segments (a message split in two), are left out.
    """
    requests: list[list[float]] = []
    stamps: list[float] = []
    for line in lines:
        match = _SEGMENT.match(line.strip())
        if match is None or match.group(4) == "0":
            continue
        step = _step(int(match.group(2)), int(match.group(3)), ports)
        if step == 0:
            stamps = [float(match.group(1))]
        elif stamps and step == len(stamps):
            stamps.append(float(match.group(1)))
            if len(stamps) == 6:
                requests.append([(b - a) * 1e6 for a, b in itertools.pairwise(stamps)])
                stamps = []
        else:
            stamps = []
    return requests


def _step(src: int, dst: int, ports: Ports) -> int | None:
    """Which of a request's six segments goes from `src` to `dst`, in order."""
    for step, (port, inward) in enumerate(
        ((ports.front, True), (ports.back, True), (ports.app, True),
         (ports.app, False), (ports.back, False), (ports.front, False))
    ):
        if (dst if inward else src) == port:
            return step
    return None


def median_gaps(requests: list[list[float]]) -> list[float]:
    """The median of each gap, and of the whole trip through the mesh, last."""
    if not requests:
        raise ValueError("no complete request was captured")
    columns = [statistics.median(column) for column in zip(*requests, strict=True)]
    return [*columns, statistics.median(sum(request) for request in requests)]


def capture(url: str, host: str | None, ports: Ports, seconds: float) -> list[list[float]]:
    """Load `url` at c=1 for `seconds` while tcpdump stamps the path's segments."""
    wrk = ["wrk", "-t1", "-c1", f"-d{seconds + 2:.0f}s", url] + (["-H", f"Host: {host}"]
                                                                  if host else [])
    load = subprocess.Popen(wrk, stdout=subprocess.DEVNULL)
    try:
        time.sleep(1)  # past wrk's connect
        dump = subprocess.run(
            ["timeout", f"{seconds}", "tcpdump", "-i", "lo", "-tt", "-n", "-q", "-B", "65536",
             f"tcp and (port {ports.front} or port {ports.back} or port {ports.app})"],
            capture_output=True, text=True, timeout=seconds + 30,
        )
    finally:
        load.wait(timeout=seconds + 30)
    gaps = request_gaps(dump.stdout.splitlines(), ports)
    if not gaps:  # tcpdump says why (no permission, no such interface, ...)
        raise RuntimeError(f"tcpdump captured no complete request: {dump.stderr.strip()}")
    return gaps


def report(paths: dict[str, tuple[str, str | None, Ports]], seconds: float) -> str:
    """The median gaps of each path, as a table (microseconds)."""
    header = f"{'median us at c=1':<24}" + "".join(f"{label:>16}" for label in paths)
    rows = {label: median_gaps(capture(url, host, ports, seconds))
            for label, (url, host, ports) in paths.items()}
    lines = [header]
    for number, gap in enumerate((*GAPS, "through the mesh")):
        lines.append(f"{gap:<24}" + "".join(f"{rows[label][number]:>16.1f}" for label in paths))
    return "\n".join(lines)
