"""Durations as vmesh files write them (policy, service files, CLI flags): `2s`, `500ms`,
`1m30s` (Go/Envoy style)."""

import re

_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|us|h|m|s))+")


def parse_duration(value: object) -> float:
    """Seconds in a duration string; ValueError (with what to write instead) otherwise."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f"duration must be a string with a unit like 2s or 500ms, not {value!r}"
        )
    text = value.strip()
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"invalid duration {value!r}: write a number and a unit (h, m, s, ms, us)")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest exact policy-file spelling of `seconds` (`1.5s`, `250ms`)."""
    if seconds >= 1 or seconds == 0:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"
