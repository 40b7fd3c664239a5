"""A TEST DOUBLE of a load balancer in front of gateway replicas: a TCP proxy that sends
each connection to the first backend that accepts it (nginx's `backup` servers behave so),
so workers all attach to one replica and move to the next when it dies. Run it with
`python -m tests.support.balancer --port P BACKEND_PORT...`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


async def _connect(backends: list[int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    for port in backends:
        with contextlib.suppress(OSError):
            return await asyncio.open_connection("127.0.0.1", port)
    raise ConnectionRefusedError("no backend accepts")


async def serve(port: int, backends: list[int]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await _connect(backends)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("balancer ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("backends", type=int, nargs="+")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.backends))


if __name__ == "__main__":
    main()
