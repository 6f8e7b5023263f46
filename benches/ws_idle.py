"""Memory per idle WebSocket, and what holding them costs the sockets that talk.

For each server, one after another in one run: start it (one worker, access log off) on
``benches/apps/asgi_ws_echo.py``, open one WebSocket (the baseline includes one served
socket), then COUNT more, hold them idle, and divide the growth of the server's process tree
RSS by the sockets held. While they are held, one more WebSocket echoes a 32-byte text
message ECHOES times, one at a time, and the round trips give the echo p50 and p99.

``--warm BYTES`` makes each held socket echo one message of that many bytes (compressed, with
``--deflate``) before it idles,
so that what a server keeps after a socket has been used shows (a compressor, grown
buffers), not only what a fresh one costs.

``--deflate`` makes the held sockets offer permessage-deflate (the default offer of browsers
and of the websockets client: both context takeovers, 15-bit windows), so what a server keeps
per socket for compression shows; without it they offer no extension.

usage: python benches/ws_idle.py [--count N] [--echoes N] [--deflate] [--warm BYTES]
                                 [--servers juggler,uvicorn,uvicorn-wsproto,granian]

Prints a Markdown table (benches/PROTOCOLS.md, "ws-idle"). The server runs on CPU 0 and this
client on CPU 1; `ulimit -n` is raised to the hard limit for both.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import resource
import statistics
import struct
import sys
import time
import zlib
from collections.abc import Callable
from importlib.metadata import version

import compare
from compare import BIN, PORT, tree_kib

DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"

QUIET = ["--log-level", "warning"]


def juggler(m: str, extra: list[str]) -> list[str]:
    return [
        str(BIN / "juggler"),
        f"{m}:app",
        "--port",
        str(PORT),
        "--no-access-log",
        *QUIET,
        *extra,
    ]


def uvicorn(ws: str) -> Callable[[str, list[str]], list[str]]:
    def command(m: str, _: list[str]) -> list[str]:
        cmd = [str(BIN / "uvicorn"), f"{m}:app", "--port", str(PORT), "--loop", "uvloop"]
        return [*cmd, "--http", "httptools", "--ws", ws, "--no-access-log", *QUIET]

    return command


def granian(m: str, _: list[str]) -> list[str]:
    cmd = [str(BIN / "granian"), "--interface", "asgi", "--port", str(PORT), "--workers", "1"]
    return [*cmd, *QUIET, f"{m}:app"]


#: The command of each server for an app module, with the extra arguments given for juggler.
SERVERS: dict[str, Callable[[str, list[str]], list[str]]] = {
    "juggler": juggler,
    "uvicorn": uvicorn("websockets"),
    "uvicorn-wsproto": uvicorn("wsproto"),
    "granian": granian,
}


async def handshake(
    port: int, deflate: bool
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    extension = f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n" if deflate else ""
    writer.write(
        (
            "GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extension}\r\n"
        ).encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        writer.close()
        return None
    if deflate and b"permessage-deflate" not in head.lower():
        writer.close()
        raise Declined
    return reader, writer


class Declined(Exception):
    """The server answered a permessage-deflate offer without it: nothing to measure."""


def text_frame(payload: bytes, compressed: bool = False) -> bytes:
    """A masked, final text frame (payload under 64 KiB); ``compressed``: deflated alone,
    with RSV1 set, so that the server's decompressor is used too."""
    first = 0x81
    if compressed:
        deflate = zlib.compressobj(wbits=-15)
        payload = (deflate.compress(payload) + deflate.flush(zlib.Z_SYNC_FLUSH))[:-4]
        first |= 0x40
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        head = struct.pack("!BB", first, 0x80 | len(payload))
    else:
        head = struct.pack("!BBH", first, 0x80 | 126, len(payload))
    return head + mask + masked


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    _first, second = await reader.readexactly(2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return await reader.readexactly(size)


async def echo_latencies(port: int, echoes: int) -> list[float]:
    """Round trips of one 32-byte message at a time, in ms, on a socket of its own that
    offers no extension (so every server echoes it the same way)."""
    opened = await handshake(port, deflate=False)
    if opened is None:
        return []
    reader, writer = opened
    payload = b"x" * 32
    out: list[float] = []
    for _ in range(echoes):
        began = time.perf_counter()
        writer.write(text_frame(payload))
        await read_frame(reader)
        out.append((time.perf_counter() - began) * 1000)
    writer.close()
    return out


async def hold(
    port: int, count: int, deflate: bool, pid: int, echoes: int, warm: int
) -> dict[str, float]:
    held: list[asyncio.StreamWriter] = []
    first = await handshake(port, deflate)
    if first is None:
        raise SystemExit("the server refused the first WebSocket")
    held.append(first[1])
    await asyncio.sleep(1)
    base = tree_kib(pid, "VmRSS")
    sem = asyncio.Semaphore(200)

    async def one() -> None:
        async with sem:
            try:
                opened = await asyncio.wait_for(handshake(port, deflate), 10)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                return
            if opened is None:
                return
            if warm:
                reader, writer = opened
                writer.write(text_frame(b"w" * warm, compressed=deflate))
                try:
                    await asyncio.wait_for(read_frame(reader), 10)
                except (TimeoutError, OSError, asyncio.IncompleteReadError):
                    writer.close()
                    return
            held.append(opened[1])

    await asyncio.gather(*(one() for _ in range(count)))
    await asyncio.sleep(2)  # let the server settle after the last handshake
    after = tree_kib(pid, "VmRSS")
    rtt = sorted(await echo_latencies(port, echoes))
    for w in held:
        w.close()
    return {
        "held": len(held) - 1,
        "base_mib": base / 1024,
        "after_mib": after / 1024,
        "kib_per_ws": (after - base) / max(1, len(held) - 1),
        "p50": statistics.median(rtt) if rtt else float("nan"),
        "p99": rtt[int(len(rtt) * 0.99) - 1] if rtt else float("nan"),
    }


def measure(
    server: str, count: int, deflate: bool, echoes: int, warm: int, extra: list[str]
) -> dict[str, float] | None:
    proc = compare.launch(server, SERVERS[server]("asgi_ws_echo", extra))
    if proc is None:
        return None
    try:
        return asyncio.run(hold(PORT, count, deflate, proc.pid, echoes, warm))
    except Declined:
        return {}
    finally:
        compare.stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--echoes", type=int, default=2000)
    ap.add_argument("--deflate", action="store_true")
    ap.add_argument("--warm", type=int, default=0, help="one echo of BYTES per held socket")
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--juggler-args", default="", help="more flags for juggler, one string")
    args = ap.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {1})
    offer = "permessage-deflate offered" if args.deflate else "no extension offered"
    print(
        f"`python benches/ws_idle.py {' '.join(sys.argv[1:])}` ({offer}"
        f"{f', one {args.warm}-byte echo per socket first' if args.warm else ''});"
        f" {compare.versions()}, wsproto {version('wsproto')}\n"
    )
    print(
        "| server | held | RSS before MiB | RSS held MiB | KiB per WebSocket"
        " | echo p50 ms | echo p99 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for server in args.servers.split(","):
        extra = args.juggler_args.split()
        r = measure(server, args.count, args.deflate, args.echoes, args.warm, extra)
        if r is None:
            print(f"| {server} | did not start | | | | | |")
            continue
        if not r:
            print(f"| {server} | declines permessage-deflate | | | | | |")
            continue
        print(
            f"| {server} | {r['held']:.0f} | {r['base_mib']:.1f} | {r['after_mib']:.1f} "
            f"| {r['kib_per_ws']:.1f} | {r['p50']:.2f} | {r['p99']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
