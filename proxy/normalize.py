"""Request-target normalization: the one path that routing, authorization and the app all see.

Follows Istio's hardened normalization (after CVE-2021-31920): a single
percent-decoding pass (never twice), `%00` rejected, `%2F`/`%5C` and `\\`
turned into `/`, repeated slashes merged, `.` and `..` resolved as RFC 3986
§5.2.4 says, the query split off before any path match. A dot segment with
parameters (`..;x`, `.;`) is rejected: RFC 3986 does not resolve it, but servlet
containers do (`/public/..;/admin` is their `/admin`), so it would carry a request
past a policy written for the path the proxy sees. Unreserved
characters are decoded, every other escape is kept with upper-case hex. The
proxy forwards the normalized path, so no policy can be bypassed by
spelling a path differently.
"""

import re
from typing import Final

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# What a target may carry besides letters and digits: RFC 3986 pchar / "/" / "?", plus "%"
# (escapes checked separately) and "\\" (read as "/"); anything else is rejected.
PATH_CHARACTERS: Final = "-._~!$&'()*+,;=:@/?%\\"
_HEX = frozenset("0123456789abcdefABCDEF")
# Searched for what is not allowed: a target that passes (nearly all) then costs no Match.
_NOT_ALLOWED = re.compile(f"[^A-Za-z0-9{re.escape(PATH_CHARACTERS)}]")
_SLASHES = re.compile(r"/{2,}")

NOT_ORIGIN_FORM = "http1.path.not_origin_form"
INVALID_CHARACTER = "http1.path.invalid_character"
INVALID_ESCAPE = "http1.path.invalid_percent_encoding"
NUL = "http1.path.nul"
DOT_SEGMENT_PARAMETER = "http1.path.dot_segment_parameter"


class BadPath(ValueError):
    """A request target that cannot be normalized; `reason` is the stable rejection string."""

    def __init__(self, reason: str, target: str) -> None:
        super().__init__(f"{reason}: {target[:200]!r}")
        self.reason = reason


class Target:
    """A normalized origin-form target: the path to match and forward, the raw query, and
    both as the target to forward (`text`). Immutable, so one may serve many requests.

    (Not a dataclass: mypyc compiles this `__init__`.)
    """

    __slots__ = ("path", "query", "text")

    def __init__(self, path: str, query: str) -> None:
        self.path: Final = path
        self.query: Final = query
        self.text: Final = f"{path}?{query}" if query else path

    def __str__(self) -> str:
        return self.text


# Targets recur (the same few paths, request after request): the last ones normalized are
# kept, up to `_KEPT` of them, each at most `_KEPT_LENGTH` characters, so the store stays
# small whatever clients send; it starts afresh when full. Refused targets are not kept.
_KEPT = 4096
_KEPT_LENGTH = 256
_normalized: dict[str, Target] = {}


def normalize_target(raw: str) -> Target:
    """Normalize an origin-form request target (`/a/./b?x=1`), or raise BadPath."""
    target = _normalized.get(raw)
    if target is None:
        target = _normalize(raw)
        if len(raw) <= _KEPT_LENGTH:
            if len(_normalized) >= _KEPT:
                _normalized.clear()
            _normalized[raw] = target
    return target


def _normalize(raw: str) -> Target:
    if not raw.startswith("/"):
        raise BadPath(NOT_ORIGIN_FORM, raw)
    if _NOT_ALLOWED.search(raw):
        raise BadPath(INVALID_CHARACTER, raw)
    path, _, query = raw.partition("?")
    if "%" not in raw and "\\" not in raw and "//" not in raw and "/." not in raw:
        return Target(path, query)  # nothing to decode, merge or resolve: already normal
    _check_escapes(query, raw)
    path = _decode_once(path, raw).replace("\\", "/")
    path = _remove_dot_segments(_SLASHES.sub("/", path), raw)
    return Target(path or "/", query)


def _check_escapes(text: str, raw: str) -> None:
    for index in _escape_positions(text, raw):
        if text[index + 1 : index + 3] == "00":
            raise BadPath(NUL, raw)


def _escape_positions(text: str, raw: str) -> list[int]:
    positions = []
    index = text.find("%")
    while index != -1:
        if not (set(text[index + 1 : index + 3]) <= _HEX and len(text) >= index + 3):
            raise BadPath(INVALID_ESCAPE, raw)
        positions.append(index)
        index = text.find("%", index + 3)
    return positions


def _decode_once(path: str, raw: str) -> str:
    out = []
    last = 0
    for index in _escape_positions(path, raw):
        out.append(path[last:index])
        byte = int(path[index + 1 : index + 3], 16)
        if byte == 0:
            raise BadPath(NUL, raw)
        char = chr(byte)
        if char in "/\\":
            out.append("/")
        elif char in _UNRESERVED:
            out.append(char)
        else:
            out.append(f"%{byte:02X}")
        last = index + 3
    out.append(path[last:])
    return "".join(out)


def _remove_dot_segments(path: str, raw: str) -> str:
    segments = path.split("/")[1:]
    result: list[str] = []
    for segment in segments:
        if segment.partition(";")[0] in (".", "..") and ";" in segment:
            raise BadPath(DOT_SEGMENT_PARAMETER, raw)
        if segment == "..":
            if result:
                result.pop()
        elif segment != ".":
            result.append(segment)
    trailing = segments and segments[-1] in (".", "..")
    return "/" + "/".join(result) + ("/" if trailing and result else "")
