"""Protocol detection on a per-upstream TCP listener, without I/O: HTTP/1.x or opaque.

`detect` looks at the bytes a client sent so far and says whether they begin an
HTTP/1.x request (`HTTP`), cannot (`OPAQUE`), or could but the first line is not
complete yet (`NEED_MORE`). The first line must be a strict request line: a
known method, one space, a target of visible ASCII, one space, `HTTP/1.0` or `HTTP/1.1`,
CRLF. Bytes that contradict it decide `OPAQUE` at once (a TLS ClientHello or a
Postgres startup message from their first byte); a line still incomplete after
`MAX_REQUEST_LINE` bytes is `OPAQUE` too (the HTTP stack would refuse it anyway).
Once a verdict is given, more bytes never change it.
"""

from enum import Enum

from proxy.http1 import MAX_REQUEST_LINE

DEFAULT_DETECT_TIMEOUT = 10.0  # seconds, as Linkerd's; ServicePolicy `detect_timeout` overrides


class Protocol(Enum):
    HTTP = "http"
    OPAQUE = "opaque"
    NEED_MORE = "need_more"


# RFC 9110 §9 and PATCH (RFC 5789): the methods the HTTP stack knows
METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE",
           b"PATCH")
_VERSION = b"HTTP/1."
_MINOR = (b"0", b"1")  # the versions the parser accepts
_LONGEST_METHOD = max(len(m) for m in METHODS)


def detect(data: bytes, limit: int = MAX_REQUEST_LINE) -> Protocol:
    """What the first bytes of a connection are; `limit` bounds the first line."""
    end = data.find(b"\r\n", 0, limit + 2)
    line = data[:end] if end >= 0 else data[: limit + 2]
    if not _plausible_prefix(line, complete=end >= 0):
        return Protocol.OPAQUE
    if end >= 0:
        return Protocol.HTTP
    # with limit + 2 bytes and no CRLF in them, no more bytes can complete a line within limit
    return Protocol.OPAQUE if len(data) >= limit + 2 else Protocol.NEED_MORE


def _plausible_prefix(line: bytes, *, complete: bool) -> bool:
    """True when `line` is a whole request line (`complete`) or a prefix of one."""
    method, sp1, rest = line.partition(b" ")
    if not sp1:
        return (not complete and len(method) <= _LONGEST_METHOD
                and any(m.startswith(method) for m in METHODS))
    if method not in METHODS:
        return False
    target, sp2, version = rest.partition(b" ")
    if not _visible(target):
        return False
    if not sp2:
        return not complete
    if not target:
        return False
    if complete:
        return (len(version) == len(_VERSION) + 1 and version.startswith(_VERSION)
                and version[-1:] in _MINOR)
    if len(version) <= len(_VERSION):
        return _VERSION.startswith(version)
    # the minor version, then maybe the CR of a CRLF whose LF has not arrived yet
    return (version.startswith(_VERSION) and version[len(_VERSION):len(_VERSION) + 1] in _MINOR
            and version[len(_VERSION) + 1:] in (b"", b"\r"))


def _visible(target: bytes) -> bool:
    return all(0x21 <= byte <= 0x7E for byte in target)
