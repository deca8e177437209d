"""Moving one request and its response between a downstream and an upstream connection.

`send_request` writes the request (streaming or buffered body) and waits for
the response head; `relay_response` copies the response back, re-framing
the body when the two sides need it, records the outcome in the request event
and pools the upstream connection. Failures before a response head are `AttemptFailed` (the retry
layer may try again); bad framing from upstream is a 502, never relayed.
"""

import logging
import time
from collections.abc import AsyncIterator

from proxy.connection import Connection
from proxy.continue_body import EXPECT_CONTINUE, ContinueBody
from proxy.downstream import Downstream
from proxy.events import RequestEvent
from proxy.http1 import (
    IDLE_CLOSED_HEADER,
    LAST_CHUNK,
    NOT_FORWARDED,
    Http1Error,
    MessageEnd,
    RequestHead,
    ResponseHead,
    encode_chunk,
    encode_request_head,
    encode_response_head,
    forwardable_headers,
)
from proxy.retry import IDEMPOTENCY_KEY, resend_on_new_connection
from proxy.retrying import AttemptFailed
from proxy.upstream import Pool, Upstream
from vm_mesh.defaults import CLIENT_ID_HEADER
from vm_mesh.redaction import redacted_target

Body = bytes | AsyncIterator[bytes] | ContinueBody | None


def may_resend(head: RequestHead, body: Body) -> bool:
    """Whether a request whose pooled connection failed under it, before any response, may
    go once more on a new one (`resend_on_new_connection`: an idempotent method or an
    `Idempotency-Key`, and a body at hand or still with the client). The inbound proxy
    (to its app) and the outbound one (to an instance) both ask this."""
    return resend_on_new_connection(
        head.method, head.header(IDEMPOTENCY_KEY) is not None, body_repeatable(body)
    )


def body_repeatable(body: Body) -> bool:
    """Whether another attempt can send the body: none, at hand, or still with the client."""
    return isinstance(body, bytes | None) or (isinstance(body, ContinueBody) and body.repeatable)


def closed_unread(head: ResponseHead) -> bool:
    """Whether a response is a peer proxy's word that it closed the connection idle
    (`downstream.IDLE_CLOSED_RESPONSE`): the request sent on it crossed the close and was
    never read, so it may go again on a new connection, whatever its method. (The word is a
    hop-by-hop header, which the peer proxy never passes on from its app.)"""
    return head.status == 408 and any(name == IDLE_CLOSED_HEADER for name, _ in head.headers)


class UpstreamProtocolError(Exception):
    """The upstream sent something that is not valid HTTP/1.1 framing."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Response:
    """A response whose head has arrived; its body is still on the upstream connection.

    (Not a dataclass: one is made per request, and mypyc compiles this `__init__`.)
    """

    __slots__ = ("head", "upstream")

    def __init__(self, head: ResponseHead, upstream: Upstream) -> None:
        self.head = head
        self.upstream = upstream

    @property
    def status(self) -> int:
        return self.head.status


# Never forwarded as received: `expect` is answered by the proxy (or asked again by
# `send_request`), and the caller's identity is set only by the inbound proxy that verified it.
_NOT_FORWARDED_UPSTREAM = NOT_FORWARDED | {b"expect", CLIENT_ID_HEADER.encode()}


def request_headers(
    head: RequestHead, body: Body, extra: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """Headers to send upstream: end-to-end ones, our own (`extra`), and the body's framing."""
    headers = forwardable_headers(head.headers, _NOT_FORWARDED_UPSTREAM)
    headers += extra
    if isinstance(body, bytes):
        if body or head.content_length is not None:
            headers.append((b"content-length", str(len(body)).encode()))
    elif isinstance(body, ContinueBody) and body.length is not None:
        headers.append((b"content-length", str(body.length).encode()))
    elif body is not None:
        headers.append((b"transfer-encoding", b"chunked"))
    return headers


async def send_request(
    upstream: Upstream,
    head: RequestHead,
    headers: list[tuple[bytes, bytes]],
    body: Body,
    head_within: float | None = None,
    client: Downstream | None = None,
) -> Response:
    """Send one request; return when the final response head is in. Raises TimeoutError
    when the upstream sends nothing for `head_within` seconds after the request went out.

    Interim responses (1xx, such as 103 Early Hints) go on to `client` as they come, their
    hop-by-hop headers dropped, when it asked in HTTP/1.1 (a 1.0 client gets none, RFC 9110
    15.2), but a 100 (Continue), which answers the proxy's own expectation: a `ContinueBody`
    not yet read goes with the head alone and `expect: 100-continue`, the upstream's 100 is
    the client's go-ahead, and an answer before it leaves the connection owing the body,
    never to be reused. (A 101 is bad framing: no upgrade is ever asked for.)"""
    connection = upstream.connection
    upstream.requests += 1
    upstream.responses.expect(head.method)
    waiting: ContinueBody | None = None
    if isinstance(body, ContinueBody):
        if body.data is None:
            waiting, body = body, None
            headers = [*headers, EXPECT_CONTINUE]
        else:
            body = body.data  # read whole by an attempt before
    try:
        if isinstance(body, bytes):
            connection.write(encode_request_head(head, headers, body))
        else:
            connection.write(encode_request_head(head, headers))
            if body is not None:
                await _send_stream(connection, body)
        if connection.must_drain:
            await connection.drain()
        take = connection.take_event
        while True:
            try:
                event = take()
            except Http1Error as exc:
                raise UpstreamProtocolError("upstream.bad_response", str(exc)) from None
            if event is None:
                if connection.closed:
                    raise AttemptFailed(
                        "reset", "upstream.reset: the upstream closed the connection"
                    )
                await connection.wait(head_within)
            elif isinstance(event, ResponseHead):
                status = event.status
                if status >= 200:
                    if waiting is not None:
                        upstream.owes_body = True
                    return Response(event, upstream)
                if status == 100:
                    if waiting is not None:
                        await _send_body(connection, await waiting.go_ahead())
                        waiting = None
                elif client is not None and head.version == "1.1":
                    await client.write(encode_response_head(
                        status, event.reason, forwardable_headers(event.headers)))
    except TimeoutError:  # an OSError, but no reset: `head_within` passed without a head
        upstream.close()
        raise
    except (ConnectionError, OSError) as reset:
        answer = _early_answer(upstream)
        if answer is not None:  # its connection is closed once the answer is relayed
            return Response(answer, upstream)
        upstream.close()
        raise AttemptFailed("reset", f"upstream.reset: {reset}") from None
    except BaseException:
        upstream.close()  # cancelled (timeout) or failed mid-request: the connection is unusable
        raise


async def _send_stream(connection: Connection, body: AsyncIterator[bytes]) -> None:
    """Send a body as it arrives, chunked; a malformed client body raises Http1Error (the
    client's)."""
    async for chunk in body:
        connection.write(encode_chunk(chunk))
        await connection.drain()
    connection.write(LAST_CHUNK)


async def _send_body(connection: Connection, body: bytes | AsyncIterator[bytes]) -> None:
    """Send the body of a request whose head went before it."""
    if isinstance(body, bytes):
        connection.write(body)
    else:
        await _send_stream(connection, body)
    if connection.must_drain:
        await connection.drain()


def _early_answer(upstream: Upstream) -> ResponseHead | None:
    """The final response head an upstream sent before it stopped taking the request (a 413
    for a body too large, then a close), if it came: that, not a 502, is the client's."""
    take = upstream.connection.take_event
    try:
        while (event := take()) is not None:
            if isinstance(event, ResponseHead) and event.status >= 200:
                return event
    except Http1Error:
        pass
    return None


def response_framing(
    head: ResponseHead, request: RequestHead
) -> tuple[list[tuple[bytes, bytes]], str]:
    """Headers for the client and how the body is sent: `length`, `chunked`, `close`, `none`."""
    headers = forwardable_headers(head.headers)
    if request.method == "HEAD" or head.status in (204, 304):
        if head.content_length is not None and head.status != 204:  # none on a 204: RFC 9110 8.6
            headers.append((b"content-length", str(head.content_length).encode()))
        return headers, "none"
    if head.content_length is not None and not head.chunked:
        headers.append((b"content-length", str(head.content_length).encode()))
        return headers, "length"
    if request.version == "1.1":
        headers.append((b"transfer-encoding", b"chunked"))
        return headers, "chunked"
    return headers, "close"


async def discard(response: Response) -> None:
    """Drop a response that will not be relayed (a retried attempt): close its connection."""
    response.upstream.close()


async def relay_response(
    response: Response,
    client: Downstream,
    request: RequestHead,
    event: RequestEvent,
    pool: Pool,
    *,
    idle_timeout: float,
    log: logging.Logger,
) -> bool:
    """Copy the response to the client, record it in `event` and pool its connection.

    Writes are gathered while more of the response is already parsed, and flushed
    before waiting on the upstream, so a small response leaves in one segment and
    a slow stream is never held back. An upstream that sends nothing for
    `idle_timeout` seconds mid-body is given up (`upstream.body_timeout`), so a
    stalled app cannot hold both connections for ever. On any failure (bad framing
    from upstream, the client gone, cancellation) the upstream connection is
    closed: it is mid-message.

    Returns False when the client connection must close: the client or the upstream
    asked for it, or the upstream cut the response off (logged; the status already
    went out, so the client sees a truncated body and a closed connection).
    """
    event.status = response.status
    event.response_at = time.monotonic()
    upstream = response.upstream
    connection = upstream.connection
    try:
        head = response.head
        headers, framing = response_framing(head, request)
        if not (client.may_keep_alive and framing != "close"):
            headers.append((b"connection", b"close"))
            client.request_keep_alive = False  # the caller closes the client connection after
        pending = [encode_response_head(head.status, head.reason, headers)]
        sent = 0
        take = connection.take_event
        while True:
            try:
                message = take()
            except Http1Error as exc:
                raise UpstreamProtocolError("upstream.bad_response_body", str(exc)) from None
            if message is None:
                if pending:  # flush before waiting: a slow stream is never held back
                    await client.write(b"".join(pending))
                    pending.clear()
                    continue  # the write may have waited, and more of the response come
                if not connection.closed:
                    try:
                        await connection.wait(idle_timeout)
                    except TimeoutError:
                        raise UpstreamProtocolError(
                            "upstream.body_timeout",
                            f"the upstream sent nothing for {idle_timeout:g}s mid-response",
                        ) from None
                    continue
                if framing != "none" and (head.content_length is not None or head.chunked):
                    raise UpstreamProtocolError(
                        "upstream.truncated", "the upstream closed mid-response"
                    )
                reusable = False
                break
            if isinstance(message, MessageEnd):
                reusable = message.keep_alive
                break
            if isinstance(message, bytes) and framing != "none":
                sent += len(message)
                pending.append(encode_chunk(message) if framing == "chunked" else message)
        if framing == "chunked":
            pending.append(LAST_CHUNK)
        if pending:
            await client.write(b"".join(pending))
    except UpstreamProtocolError as cut_off:
        upstream.close()
        event.error = cut_off.reason
        log.warning(
            "response cut off",
            extra={"reason": cut_off.reason, "detail": str(cut_off),
                   "dst_service": event.dst_service,
                   "path": redacted_target(event.path)},
        )
        return False
    except BaseException:
        upstream.close()
        raise
    event.bytes_out = sent
    pool.release(upstream, reusable)
    return client.request_keep_alive
