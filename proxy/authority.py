"""The syntax of an authority (RFC 3986 3.2), as Host headers and absolute-form targets carry it.

Syntax only: whether a name is a mesh service is for routing to say. A Host
value is `uri-host [":" port]` (RFC 9110 7.2), empty when the target has no
authority (RFC 9112 3.2); an `http(s)://` target's authority may not leave the
host empty (RFC 9110 4.2.1), and the `userinfo "@"` its grammar allows is
refused on its own terms (RFC 9110 4.2.4). A port is digits, at most 65535, and
may be empty (RFC 3986 3.2.3: the scheme's default). Nearly every value is a
plain name or address with a short port, which one regex accepts; the rest are
parsed in full, which also says what is wrong.
"""

import ipaddress
import re

# A name or IPv4 address and a port below 10000 (a subset of the grammar), with the
# whitespace llhttp leaves after a header value.
_USUAL = re.compile(rb"[A-Za-z0-9.\-]+(?::[0-9]{0,4})?[ \t]*")
# What a reg-name may not hold: a character outside unreserved, sub-delims and "%", or a
# "%" without two hex digits after it.
_NOT_REG_NAME = re.compile(rb"[^A-Za-z0-9\-._~!$&'()*+,;=%]|%(?![0-9A-Fa-f]{2})")
_IPV_FUTURE = re.compile(rb"[vV][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+")
_ABSOLUTE = re.compile(rb"https?://([^/?#]*)", re.IGNORECASE)
MAX_PORT = 65535


def host_problem(value: bytes) -> str | None:
    """What makes a Host header value no `uri-host [":" port]`, or None when it is one."""
    if _USUAL.fullmatch(value) is not None:
        return None
    value = value.rstrip(b" \t")
    if not value:
        return None  # the target has no authority (RFC 9112 3.2)
    return _host_and_port_problem(value)


def absolute_authority(target: bytes) -> bytes | None:
    """The authority of an absolute-form `http(s)://` target, None for any other form."""
    found = _ABSOLUTE.match(target)
    return found.group(1) if found is not None else None


def has_userinfo(authority: bytes) -> bool:
    """Whether an absolute-form target's authority carries userinfo: RFC 9110 4.2.4 has a
    recipient treat it as an error, since `http://trusted.example@evil/` goes to `evil`.
    (No host or port holds an "@", and the authority ends before any path, so one "@"
    is enough.)"""
    return b"@" in authority


def authority_problem(authority: bytes) -> str | None:
    """What makes an absolute-form target's authority no `host [":" port]` with a host, or
    None when it is one (never for one with userinfo: its "@" is a problem)."""
    if _USUAL.fullmatch(authority) is not None:
        return None
    if not authority:
        return "the host is empty"
    return _host_and_port_problem(authority)


def _host_and_port_problem(value: bytes) -> str | None:
    if value.startswith(b"["):
        literal, bracket, port = value[1:].partition(b"]")
        if not bracket:
            return "the IP literal has no closing ']'"
        if port and not port.startswith(b":"):
            return f"{_shown(port[:1])} follows the IP literal, not ':'"
        problem = _ip_literal_problem(literal)
        return problem if problem is not None else _port_problem(port[1:])
    host, _, port = value.partition(b":")
    if not host:
        return "the host is empty"
    bad = _NOT_REG_NAME.search(host)
    if bad is not None:
        return _bad_character(bad.group(), "a host name")
    return _port_problem(port)


def _ip_literal_problem(literal: bytes) -> str | None:
    if _IPV_FUTURE.fullmatch(literal) is not None:
        return None
    try:
        ipaddress.IPv6Address(literal.decode("ascii"))
    except ValueError:
        return f"[{literal.decode('ascii', 'backslashreplace')}] is no IPv6 address"
    if b"%" in literal:  # a zone (RFC 6874) is no part of RFC 3986's IPv6address
        return "an IPv6 zone is not allowed in a URI"
    return None


def _port_problem(port: bytes) -> str | None:
    if not port:
        return None  # "web:" is "web" on the scheme's default port
    if not port.isdigit():
        return f"the port {_shown(port)} is not a number"
    digits = port.lstrip(b"0")  # not int() first: a port may be thousands of digits long
    if len(digits) > len(str(MAX_PORT)) or (digits and int(digits) > MAX_PORT):
        return f"the port {_shown(port)} is out of range (0-{MAX_PORT})"
    return None


def _bad_character(character: bytes, where: str) -> str:
    if character == b"%":
        return f"a '%' in {where} is not followed by two hex digits"
    return f"{_shown(character)} is not allowed in {where}"


def _shown(text: bytes) -> str:
    """`text` quoted for a message, bytes beyond ASCII as escapes, at most 64 of them."""
    return "'" + text[:64].decode("ascii", "backslashreplace") + "'"
