"""bench/hops.py reads tcpdump's stamps into each hop's share of a request's time."""

import pytest

from bench.hops import Ports, median_gaps, request_gaps

PORTS = Ports(front=4140, back=4143, app=8080)


def segment(stamp: float, src: int, dst: int, length: int) -> str:
    return f"{stamp:.6f} IP 127.0.0.1.{src} > 127.0.0.1.{dst}: tcp {length}"


def one_request(start: float, gaps_us: list[int]) -> list[str]:
    """The six data segments of one request, `gaps_us` apart, with ACKs in between."""
    hops = [(50000, 4140), (50001, 4143), (50002, 8080), (8080, 50002), (4143, 50001),
            (4140, 50000)]
    stamps = [start]
    for gap in gaps_us:
        stamps.append(stamps[-1] + gap / 1e6)
    lines = []
    for stamp, (src, dst) in zip(stamps, hops, strict=True):
        lines.append(segment(stamp, src, dst, 77))
        lines.append(segment(stamp + 1e-6, dst, src, 0))  # the ACK carries no data
    return lines


def test_each_hop_gets_the_gap_before_its_segment_leaves() -> None:
    lines = one_request(100.0, [20, 60, 10, 25, 55]) + one_request(100.01, [30, 70, 12, 21, 65])
    requests = request_gaps(lines, PORTS)
    assert [round(gap) for gap in requests[0]] == [20, 60, 10, 25, 55]
    assert [round(gap) for gap in requests[1]] == [30, 70, 12, 21, 65]
    medians = median_gaps(requests)
    assert [round(gap) for gap in medians] == [25, 65, 11, 23, 60, 184]


def test_requests_cut_off_by_the_capture_are_left_out() -> None:
    whole = one_request(100.01, [30, 70, 12, 21, 65])
    begun_before = one_request(100.0, [20, 60, 10, 25, 55])[4:]  # capture started mid-request
    cut_at_end = one_request(100.02, [30, 70, 12, 21, 65])[:6]
    noise = ["tcpdump: verbose output suppressed", "", segment(100.03, 9, 10, 5)]
    requests = request_gaps(begun_before + whole + cut_at_end + noise, PORTS)
    assert len(requests) == 1
    assert [round(gap) for gap in requests[0]] == [30, 70, 12, 21, 65]


def test_an_empty_capture_is_an_error_not_zeros() -> None:
    with pytest.raises(ValueError, match="no complete request"):
        median_gaps(request_gaps([], PORTS))
