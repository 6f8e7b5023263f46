"""Memory per idle WebSocket: opens N WebSockets (no extension offered) to a server already
running on 127.0.0.1:PORT, holds them idle, and prints how much the server's process tree's
RSS grew per socket (benches/PROTOCOLS.md, "idle WebSockets").

usage: python benches/ws_idle.py PORT N SERVER_PID
(raise `ulimit -n` for both the server and this client first)
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import sys

from compare import tree_kib


async def one(port: int, held: list[asyncio.StreamWriter]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.1 101"):
        held.append(writer)


async def main(port: int, count: int, pid: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    warm: list[asyncio.StreamWriter] = []
    await one(port, warm)  # the baseline includes one served WebSocket
    await asyncio.sleep(1)
    base = tree_kib(pid, "VmRSS")
    held: list[asyncio.StreamWriter] = []
    sem = asyncio.Semaphore(200)

    async def limited() -> None:
        async with sem:
            try:
                await asyncio.wait_for(one(port, held), 10)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                pass

    await asyncio.gather(*(limited() for _ in range(count)))
    await asyncio.sleep(2)  # let the server settle after the last handshake
    after = tree_kib(pid, "VmRSS")
    per = (after - base) / max(1, len(held))
    print(f"held={len(held)} rss_base_kib={base} rss_held_kib={after} kib_per_ws={per:.1f}")
    for w in held + warm:
        w.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
