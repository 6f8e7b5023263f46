"""Overload: more requests offered than one worker's event loop can serve, at a steady rate.

The app burns CPU per request (``apps/asgi_cpu.py``, about 5 ms on the benchmark machine);
the offered rate is a multiple of what one process can serve (``--overload``, default 1.5x,
measured from the app's own cost on this machine before the run). The client is open-loop:
request *i* is due at ``i / rate`` seconds whether or not earlier ones were answered, each
on a free keep-alive connection or a new one, and its latency counts from when it was due
(so a server that falls behind is not excused by a client that waits for it). A server
without admission control queues the excess, and the latency of every request grows with the
queue for as long as the overload lasts; juggler with ``--max-loop-lag`` answers the excess
503 at once, and the requests it admits keep a bounded latency.

Each server runs one worker pinned to CPU 0, the client runs on CPU 1.

usage: python benches/overload.py [--duration S] [--overload X] [--max-loop-lag MS]
                                  [--servers juggler-lag,juggler,uvicorn,granian]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "apps"))

import compare  # noqa: E402  (the server command lines, shared with `make bench`)

compare.PORT = 18190  # apart from compare.py's, so both may run on one machine
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
MAX_CONNECTIONS = 2000
#: After the last request is due, how long the ones still open may take to finish.
GRACE = 10.0


@dataclass
class Outcome:
    due: float
    done: float | None = None
    status: int | None = None
    #: Why it got no answer: the exception's type, or "unanswered".
    error: str = "unanswered"


@dataclass
class Run:
    server: str
    rate: float
    duration: float
    outcomes: list[Outcome] = field(default_factory=list)

    def latencies(self, status: int, since: float = 0.0) -> list[float]:
        return sorted(
            (o.done - o.due) * 1000
            for o in self.outcomes
            if o.status == status and o.done is not None and o.due - self.start >= since
        )

    @property
    def start(self) -> float:
        return self.outcomes[0].due if self.outcomes else 0.0


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(len(values) * p))]


class Pool:
    """Idle keep-alive connections; a request takes one, or opens a new one."""

    def __init__(self) -> None:
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open = 0

    async def take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle:
            return self.idle.pop()
        if self.open >= MAX_CONNECTIONS:
            raise ConnectionError("client connection limit")
        self.open += 1
        try:
            return await asyncio.open_connection("127.0.0.1", compare.PORT)
        except OSError:
            self.open -= 1
            raise

    def give_back(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.idle.append(conn)

    def drop(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.open -= 1
        conn[1].close()


async def one(pool: Pool, outcome: Outcome) -> None:
    try:
        conn = await pool.take()
    except OSError as exc:
        outcome.error = type(exc).__name__
        return
    reader, writer = conn
    try:
        writer.write(REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        close = chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if chunked:
            # Uvicorn chunks a body whose length the app did not give.
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                await reader.readexactly(size + 2)
            await reader.readuntil(b"\r\n")
        else:
            await reader.readexactly(length)
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
        outcome.error = type(exc).__name__
        pool.drop(conn)
        return
    outcome.done = time.monotonic()
    outcome.status = status
    if close:
        pool.drop(conn)
    else:
        pool.give_back(conn)


async def offer(run: Run) -> None:
    pool = Pool()
    tasks = []
    count = int(run.rate * run.duration)
    t0 = time.monotonic() + 0.1
    for i in range(count):
        due = t0 + i / run.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        outcome = Outcome(due)
        run.outcomes.append(outcome)
        tasks.append(asyncio.ensure_future(one(pool, outcome)))
    _, pending = await asyncio.wait(tasks, timeout=GRACE)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for reader_writer in pool.idle:
        reader_writer[1].close()


def app_cost_ms() -> float:
    """What one request of the app costs in CPU on this machine (the app's work alone)."""
    import asgi_cpu

    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(10):
            sum(i * i for i in range(asgi_cpu.WORK))
        best = min(best, (time.perf_counter() - t) / 10)
    return best * 1000


def fmt(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def table(runs: list[Run]) -> str:
    rows = [
        "| server | offered | 200 | 503 | failed or unanswered | 200s per s of the run"
        " | p50 ms | p99 ms | max ms | p99 ms, last third |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        ok = r.latencies(200)
        late = r.latencies(200, since=r.duration * 2 / 3)
        refused = sum(1 for o in r.outcomes if o.status == 503)
        failed = sum(1 for o in r.outcomes if o.status not in (200, 503))
        # Until the last answer: a server that queued finishes long after the offer ends.
        span = max((o.done for o in r.outcomes if o.done is not None), default=r.start) - r.start
        rows.append(
            f"| {r.server} | {len(r.outcomes)} | {len(ok)} | {refused} | {failed}"
            f" | {len(ok) / max(span, 1e-9):.0f} | {fmt(pct(ok, 0.5))} | {fmt(pct(ok, 0.99))}"
            f" | {fmt(ok[-1] if ok else None)} | {fmt(pct(late, 0.99))} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--overload", type=float, default=1.5)
    parser.add_argument("--max-loop-lag", type=int, default=50, metavar="MS")
    parser.add_argument("--servers", default="juggler-lag,juggler,uvicorn,granian")
    args = parser.parse_args()
    lag_server = f"juggler --max-loop-lag {args.max_loop_lag}"
    compare.SERVERS["juggler-lag"] = compare.juggler("--max-loop-lag", str(args.max_loop_lag))
    cost = app_cost_ms()
    rate = args.overload * 1000 / cost
    print(
        f"app cost {cost:.1f} ms per request: one process serves at most about"
        f" {1000 / cost:.0f}/s; offering {rate:.0f}/s ({args.overload}x) for {args.duration:g} s",
        file=sys.stderr,
    )
    os.sched_setaffinity(0, {1})
    compare.raise_fd_limit()
    runs = []
    for server in args.servers.split(","):
        sc = compare.Scenario("overload", "load", "asgi_cpu")
        proc = compare.start(server, sc)
        if proc is None:
            continue
        try:
            run = Run(lag_server if server == "juggler-lag" else server, rate, args.duration)
            asyncio.run(offer(run))
            runs.append(run)
            errors = collections.Counter(o.error for o in run.outcomes if o.status is None)
            print(
                f"{run.server}: {len(run.latencies(200))} answered 200,"
                f" median {fmt(statistics.median(run.latencies(200) or [0]))} ms;"
                f" no answer: {dict(errors) or 0}",
                file=sys.stderr,
            )
        finally:
            compare.stop(proc)
    print(table(runs))


if __name__ == "__main__":
    main()
