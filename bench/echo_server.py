"""The echo ceiling: the smallest UDP server on the same event loop as chat-server.

A DatagramProtocol that sends every datagram back, run by :func:`chat_shell.aio.run` (uvloop
when installed, plain asyncio with ``CHAT_NO_UVLOOP=1``), exactly as the chat-server is run. The
lookup load generator hits it like the real server: what it reaches is the most any Python UDP
server on this loop can answer, so lookups per second are reported as a fraction of it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any, cast

from chat_shell import aio


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.transport.sendto(data, addr)


async def serve(host: str, port: int) -> int:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=(host, port))
    bound = transport.get_extra_info("sockname")
    print(
        f"echo listening on {bound[0]}:{bound[1]} ({aio.loop_name()})", file=sys.stderr, flush=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    transport.close()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    return aio.run(serve(args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())
