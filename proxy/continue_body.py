"""The body of a request that waits for 100 (Continue) before it is sent (`Expect: 100-continue`).

The client is told to go on only when the request will be used: the outbound
proxy sends the head on with the same expectation once an instance is picked,
and passes the peer proxy's 100 on, which that proxy sends once the request
is authorized and its app connected. A request refused before then gets its
final answer while the client still holds its body.
"""

from collections.abc import AsyncIterator

from proxy.downstream import Downstream

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
EXPECT_CONTINUE = (b"expect", b"100-continue")


class ContinueBody:
    """A client's body that comes once `go_ahead` is called. A body of `length` bytes (small
    enough to retry) is kept whole once read, for the attempts after; any other streams, and
    goes once."""

    __slots__ = ("_chunks", "_client", "asked", "data", "length")

    def __init__(self, client: Downstream, length: int | None) -> None:
        self._client = client
        self.length = length
        self.asked = False  # the client was told to go on
        self.data: bytes | None = None  # the whole body once read, when kept
        self._chunks: list[bytes] = []

    @property
    def repeatable(self) -> bool:
        """Another attempt can send the body: it is kept, or the client was not asked yet."""
        return self.length is not None or not self.asked

    async def go_ahead(self) -> bytes | AsyncIterator[bytes]:
        """Tell the client to go on (once); its body, whole when kept, else as it arrives.
        An attempt cut off while reading a kept body loses none of it: the next one reads on."""
        client = self._client
        if not self.asked:
            self.asked = True
            await client.write(CONTINUE)
        if self.length is None:
            return client.body()
        chunks = self._chunks
        async for chunk in client.body():
            chunks.append(chunk)
        self.data = b"".join(chunks)
        return self.data
