"""Opens N keep-alive connections to 127.0.0.1:PORT, makes one request on each, and holds them
open (idle) until its standard input closes. Prints READY and how many it holds once every
attempt has succeeded or given up (3 s each, 60 s in all)."""

import asyncio
import sys


async def one(port: int, held: list[asyncio.StreamWriter]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    await writer.drain()
    await reader.readuntil(b"Hello, world!")
    held.append(writer)


async def attempt(port: int, held: list[asyncio.StreamWriter]) -> None:
    try:
        await asyncio.wait_for(one(port, held), 3)
    except (TimeoutError, OSError, asyncio.IncompleteReadError):
        pass


async def main(port: int, count: int) -> None:
    held: list[asyncio.StreamWriter] = []
    sem = asyncio.Semaphore(256)

    async def limited() -> None:
        async with sem:
            await attempt(port, held)

    try:
        await asyncio.wait_for(asyncio.gather(*(limited() for _ in range(count))), 60)
    except TimeoutError:
        pass
    print(f"READY {len(held)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for w in held:
        w.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
