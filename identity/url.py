"""The one rule for an identity service URL, shared by the client (before it sends a token)
and the config files (when they are loaded): https, a host, a port in range.

It uses the standard library's parser, not httpx's: the config files are read by the proxy's
compiled request path too, whose build knows no httpx."""

from urllib.parse import urlsplit

_USE = "use https://HOST:8443"


def check_identity_url(url: str) -> str:
    """`url` when it is an https:// URL with a host; ValueError with a stable reason
    (`identity.url_invalid`, `identity.url_not_https`) otherwise: over plain HTTP anyone on the
    path could take the token or answer with a leaf and bundle of their own."""
    try:
        parsed = urlsplit(url)
        port = parsed.port  # raises on a port that is no number or out of range
    except ValueError as exc:
        raise ValueError(f"identity.url_invalid: {url} is not a URL ({exc}); {_USE}") from None
    if parsed.scheme != "https":
        raise ValueError(f"identity.url_not_https: {url} is not an https:// URL; vmesh talks to "
                         f"the identity service only over TLS ({_USE})")
    if not parsed.hostname or port == 0:
        raise ValueError(f"identity.url_invalid: {url} names no host or no port (1-65535); "
                         f"{_USE}")
    return url
