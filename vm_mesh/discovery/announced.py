"""Checks of the numbers an instance announces about itself (mDNS TXT keys, Consul service
meta and port): whoever may announce may write them, so each is checked before it is used,
and a bad one says what is wrong (ValueError) instead of being used or raising elsewhere."""

MAX_WEIGHT = 10000  # as a service file's `weight`


def number(key: str, raw: object, default: int, low: int, high: int, what: str) -> int:
    """The integer `raw` announces under `key` (decimal text, or a JSON number), `default` when
    empty, between `low` and `high`; ValueError saying what is wrong."""
    if raw == "" or raw is None:
        return default
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        value = int(raw)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    else:
        raise ValueError(f"{key} {raw!r} is not a number")
    if not low <= value <= high:
        raise ValueError(f"{key} {value} is not {what}")
    return value


def weight(key: str, raw: object, default: int) -> int:
    """A weight (0 to MAX_WEIGHT; `default` when empty); ValueError saying what is wrong."""
    return number(key, raw, default, 0, MAX_WEIGHT, f"between 0 and {MAX_WEIGHT}")


def port(key: str, raw: object) -> int | None:
    """A port (None when empty); ValueError saying what is wrong."""
    return number(key, raw, 0, 1, 65535, "a port") or None
