"""A backend the tests control, run as a real process: `python -m tests.integration.backend`.

It answers every request with JSON naming itself, the path and the client
identity header it received. Behaviour is set at start and can be changed at
run time with `POST /_control` (`{"fail_every": 5, "status": 503, "delay": 0.2}`):
`fail_every: N` fails every Nth request, `delay` stalls each response, `hold: true`
keeps every request unanswered until `hold: false` (`held` in the counts).
`GET /_stats` returns counts; `GET /_bytes/N` streams N zero bytes (chunked);
`GET /_late_body/MS` sends its head at once and its body MS milliseconds later;
`GET /_stall/N` sends a head announcing 2N bytes, N of them, then nothing more
until the connection is closed. With `drop_reused` set it closes a kept-alive
connection when its second request arrives, unanswered (counted as `dropped`),
as an app whose keep-alive timeout fires just then. It prints `LISTENING <port>`
once it accepts.
"""

import argparse
import asyncio
import json
import sys
from collections import Counter

import h11

from vm_mesh.defaults import CLIENT_ID_HEADER

STREAM_CHUNK = 64 * 1024


class Backend:
    def __init__(self, name: str, fail_every: int, status: int, delay: float) -> None:
        self.name = name
        self.mode = {"fail_every": fail_every, "status": status, "delay": delay,
                     "drop_reused": False, "hold": False}
        self.released = asyncio.Event()  # set unless `hold`
        self.released.set()
        self.held = 0
        self.requests = 0
        self.dropped = 0
        self.traced = 0  # requests that came with a traceparent
        self.by_path: Counter[str] = Counter()
        self.failed = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        answered = 0
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    if not data and conn.their_state is not h11.SEND_BODY:
                        return
                    continue
                if isinstance(event, h11.Request):
                    if answered and self.mode["drop_reused"]:
                        self.dropped += 1
                        return
                    answered += 1
                    body = await self._body(conn, reader)
                    if event.target.startswith(b"/_stall/"):
                        await self._stall(conn, writer, reader, int(event.target[8:]))
                        return
                    if event.target.startswith(b"/_late_body/"):
                        await self._late_body(conn, writer, int(event.target[12:]))
                        conn.start_next_cycle()
                        continue
                    if event.target.startswith(b"/_bytes/"):
                        await self._stream_bytes(conn, writer, int(event.target[8:]))
                        conn.start_next_cycle()
                        continue
                    status, payload = await self._answer(event, body)
                    data = json.dumps(payload).encode()
                    headers = [("content-type", "application/json"),
                               ("content-length", str(len(data)))]
                    writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
                    writer.write(conn.send(h11.Data(data=data)))
                    writer.write(conn.send(h11.EndOfMessage()))
                    await writer.drain()
                    if conn.our_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except (h11.RemoteProtocolError, ConnectionError):
            return
        finally:
            writer.close()

    async def _stream_bytes(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, size: int
    ) -> None:
        """Answer `size` zero bytes, chunked, as fast as the reader takes them."""
        writer.write(conn.send(h11.Response(status_code=200, headers=[])))
        chunk = bytes(STREAM_CHUNK)
        for offset in range(0, size, STREAM_CHUNK):
            writer.write(conn.send(h11.Data(data=chunk[: size - offset])))
            await writer.drain()
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()

    async def _late_body(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                         delay_ms: int) -> None:
        """The head at once, its two-byte body `delay_ms` later (a slow download)."""
        self.by_path["/_late_body"] += 1
        writer.write(conn.send(h11.Response(status_code=200, headers=[("content-length", "2")])))
        await writer.drain()
        await asyncio.sleep(delay_ms / 1000)
        writer.write(conn.send(h11.Data(data=b"ok")))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()

    async def _stall(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                     reader: asyncio.StreamReader, size: int) -> None:
        """Half a response: a head announcing `2 * size` bytes, `size` of them, then silence
        until the peer closes the connection."""
        self.by_path["/_stall"] += 1
        headers = [("content-length", str(2 * size))]
        writer.write(conn.send(h11.Response(status_code=200, headers=headers)))
        writer.write(conn.send(h11.Data(data=bytes(size))))
        await writer.drain()
        while await reader.read(65536):
            pass

    async def _body(self, conn: h11.Connection, reader: asyncio.StreamReader) -> bytes:
        chunks = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            else:
                return b"".join(chunks)

    async def _answer(self, request: h11.Request, body: bytes) -> tuple[int, dict[str, object]]:
        path = request.target.decode()
        headers = {k.decode(): v.decode() for k, v in request.headers}
        if path == "/_stats":
            return 200, {"name": self.name, "requests": self.requests, "failed": self.failed,
                         "dropped": self.dropped, "traced": self.traced, "held": self.held,
                         "by_path": dict(self.by_path)}
        if path == "/_control" and request.method == b"POST":
            self.mode.update(json.loads(body or b"{}"))
            if self.mode["hold"]:
                self.released.clear()
            else:
                self.released.set()
            return 200, {"name": self.name, "mode": self.mode}
        self.requests += 1
        self.by_path[path] += 1
        self.traced += "traceparent" in headers
        if not self.released.is_set():
            self.held += 1
            try:
                await self.released.wait()
            finally:
                self.held -= 1
        if self.mode["delay"]:
            await asyncio.sleep(float(self.mode["delay"]))
        every = int(self.mode["fail_every"])
        if every and self.requests % every == 0:
            self.failed += 1
            return int(self.mode["status"]), {"name": self.name, "failed": True}
        return 200, {"name": self.name, "path": path, "method": request.method.decode(),
                     "client_id": headers.get(CLIENT_ID_HEADER), "body_bytes": len(body),
                     "host": headers.get("host"),
                     "traceparent": headers.get("traceparent"),
                     "tracestate": headers.get("tracestate")}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--status", type=int, default=503)
    parser.add_argument("--delay", type=float, default=0.0)
    # several instances on one port, as the same app on several hosts of one machine
    parser.add_argument("--reuse-port", action="store_true")
    args = parser.parse_args()
    backend = Backend(args.name, args.fail_every, args.status, args.delay)
    server = await asyncio.start_server(backend.serve, "127.0.0.1", args.port, reuse_address=True,
                                        reuse_port=args.reuse_port)
    port = server.sockets[0].getsockname()[1]
    print(f"LISTENING {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
