"""A TCP app that says its name, then echoes what it reads until the client's end of input, run
as a real process: `python -m tests.integration.echo --name NAME`. It prints `LISTENING <port>`
once it accepts, so that a test can tell which instance a connection reached."""

import argparse
import asyncio


async def serve(name: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(name + b"\n")
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--listen", default="127.0.0.1")
    args = parser.parse_args()
    name = args.name.encode()
    server = await asyncio.start_server(
        lambda reader, writer: serve(name, reader, writer), args.listen, 0)
    print(f"LISTENING {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
