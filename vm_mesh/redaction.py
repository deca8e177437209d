"""Query values kept out of what the mesh shows and sends away: tap, access log, spans.

A query often carries a secret (`?access_token=...`, a signed URL's signature) and the
proxy cannot tell one from a page number, so wherever a request's target leaves the
request path its query keeps its keys and loses every value (OpenTelemetry's URL
conventions allow redacting what cannot be told apart). The proxy and the console share
this one rule; the app still gets the target whole.
"""

REDACTED = "REDACTED"  # a query value's stand-in, as OpenTelemetry's conventions spell it


def redacted_query(query: str) -> str:
    """`query` with its keys kept and every value replaced: `token=x&page=2&flag` ->
    `token=REDACTED&page=REDACTED&flag`."""
    return "&".join(
        key + ("=" + REDACTED if sep else "")
        for key, sep, _ in (part.partition("=") for part in query.split("&"))
    )


def redacted_target(target: str | None) -> str | None:
    """A request target (`/items?token=x`) with its query's values replaced; a target
    without a query is returned as it is, at the cost of one search for `?`."""
    if target is None or "?" not in target:
        return target
    path, _, query = target.partition("?")
    return f"{path}?{redacted_query(query)}"
