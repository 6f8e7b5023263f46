"""The seed's claim, measured: coroutines, threads and processes waiting on a real database.

Runs the examples' slow-query endpoint (``SELECT pg_sleep(0.01)``) and their CPU-bound
endpoint (about 5 ms of hashing in Python) at increasing concurrency under each deployment,
with wrk, against the PostgreSQL of scripts/postgres.sh (started here when none runs), and
writes benches/seed/RESULTS.md (tables and what they show), results.json and seed.png.

    make bench-seed                     # installs the peers and wrk, then runs this
    python benches/seed/run.py [--duration S] [--deployments name,...] [--endpoints slow,cpu]

Async deployments serve examples/fastapi_asyncpg (asyncpg), thread deployments serve
examples/flask_app (psycopg), with the same endpoints. The "(aiomysql)" deployments serve
examples/fastapi_aiomysql's ``SELECT SLEEP(0.01)`` on the MariaDB of scripts/mariadb.sh
(started here when one of them is chosen); they have no CPU-bound endpoint. Server processes,
wrk and the load helpers are benches/compare.py's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))
import compare as c  # noqa: E402

FASTAPI = ROOT / "examples" / "fastapi_asyncpg"
FLASK = ROOT / "examples" / "flask_app"
FASTAPI_MYSQL = ROOT / "examples" / "fastapi_aiomysql"
QUERY_S = 0.01  # what pg_sleep waits; a round trip adds a little
ASYNC_POOL = 200  # asyncpg connections per worker process: more than one event loop can use
WSGI_POOL = 32  # psycopg connections per process: one per thread at most
GUNICORN_THREADS = c.THREADS  # 32, as in benches/compare.py


@dataclass
class Deployment:
    name: str
    server: str  # a key of compare.SERVERS
    app_dir: Path
    model: str  # "coroutines", "threads", "processes": what serves concurrent requests
    workers: int = 1
    threads: int = 0
    pool: int = ASYNC_POOL
    db: str = "postgres"  # or "mariadb"
    endpoints: tuple[str, ...] = ("slow", "cpu")


# juggler's WSGI pool with its defaults: a burst waits for a thread (past 1,000 waiting, in
# the listen backlog), as under Gunicorn, so the curves compare waiting with waiting.
c.SERVERS["juggler-wsgi-8"] = c.juggler("--interface", "wsgi", "--threads", "8")
c.SERVERS["juggler-wsgi-32"] = c.juggler("--interface", "wsgi", "--threads", "32")
# The default before issue 19: 503 once 4 x threads requests wait (--burst only).
c.SERVERS["juggler-wsgi-32-q128"] = c.juggler(
    "--interface", "wsgi", "--threads", "32", "--queue-size", "128"
)

CONTROL = "juggler ASGI 1 worker (asyncpg) beside MariaDB"
DEPLOYMENTS = {
    d.name: d
    for d in (
        Deployment("juggler ASGI 1 worker", "juggler", FASTAPI, "coroutines"),
        Deployment("juggler ASGI 2 workers", "juggler", FASTAPI, "processes", workers=2),
        Deployment("juggler WSGI 8 threads", "juggler-wsgi-8", FLASK, "threads", threads=8),
        Deployment("juggler WSGI 32 threads", "juggler-wsgi-32", FLASK, "threads", threads=32),
        Deployment("Uvicorn", "uvicorn", FASTAPI, "coroutines"),
        Deployment("Granian", "granian", FASTAPI, "coroutines"),
        Deployment(
            "Gunicorn gthread 32 threads",
            "gunicorn-gthread",
            FLASK,
            "threads",
            threads=GUNICORN_THREADS,
            pool=WSGI_POOL,
        ),
        # The asyncpg example again, run in the same session as the MariaDB rows: on a shared
        # machine, what they are compared with has to have met the same load.
        Deployment(CONTROL, "juggler", FASTAPI, "coroutines", endpoints=("slow",)),
        *(
            Deployment(
                f"{name} (aiomysql)",
                server,
                FASTAPI_MYSQL,
                "coroutines",
                db="mariadb",
                endpoints=("slow",),
            )
            for name, server in (
                ("juggler ASGI 1 worker", "juggler"),
                ("Uvicorn", "uvicorn"),
                ("Granian", "granian"),
            )
        ),
        Deployment("Granian WSGI 32 threads", "granian-wsgi", FLASK, "threads", threads=c.THREADS),
        Deployment(
            "juggler WSGI 32 threads --queue-size 128",
            "juggler-wsgi-32-q128",
            FLASK,
            "threads",
            threads=32,
        ),
    )
}
# Reported in a section of their own, not in the PostgreSQL tables and plot.
MARIADB = [CONTROL, *(d.name for d in DEPLOYMENTS.values() if d.db == "mariadb")]
# Measured by --burst only: a WSGI burst, juggler's defaults beside the peers and its old
# default.
BURST = (
    "juggler WSGI 32 threads",
    "juggler WSGI 32 threads --queue-size 128",
    "Granian WSGI 32 threads",
    "Gunicorn gthread 32 threads",
)
DEFAULT_DEPLOYMENTS = [n for n in DEPLOYMENTS if n not in BURST[1:3]]
for _d in DEPLOYMENTS.values():
    if _d.threads:
        _d.pool = WSGI_POOL

CONCURRENCY = {"slow": (8, 64, 256, 1024), "cpu": (8, 64, 256)}
PATHS = {"slow": "/slow", "cpu": "/cpu"}
PGPORT = os.environ.get("JUGGLER_PGPORT", "54329")
PGDATA = os.environ.get("JUGGLER_PGDATA", f"{os.environ.get('TMPDIR', '/tmp')}/juggler-pg-{PGPORT}")
MYPORT = os.environ.get("JUGGLER_MYPORT", "33069")
MYDATA = os.environ.get(
    "JUGGLER_MYDATA", f"{os.environ.get('TMPDIR', '/tmp')}/juggler-mariadb-{MYPORT}"
)
# Slower responses count as errors (timeouts); the queues at 1024 connections stay below.
WRK_TIMEOUT_S = 10
RETRIES = 1  # more runs of a point that other processes disturbed
# When this run began: each point records it, so merged results say which session they are from.
SESSION = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
OTHERS_MAX = 0.2  # cores used by other processes during a run, beyond which it is disturbed


# Per database: its script, the variable that script prints, and what its "started" line says.
DATABASES = {
    "postgres": ("postgres.sh", "DATABASE_URL", "JUGGLER_PG_STARTED=1"),
    "mariadb": ("mariadb.sh", "MYSQL_URL", "JUGGLER_MY_STARTED=1"),
}


def database(db: str) -> tuple[str, bool]:
    """Starts (or finds) ``db`` through its script: its URL, and whether this call started it."""
    script, var, started = DATABASES[db]
    out = subprocess.run(["bash", str(ROOT / "scripts" / script)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{db} did not start:\n{out.stderr}")
    url = re.search(rf"{var}=(\S+)", out.stdout).group(1)
    return url, started in out.stdout


def measure(
    d: Deployment, endpoint: str, dsn: str, duration: int, levels: tuple[int, ...]
) -> list[dict]:
    sc = c.Scenario(f"{endpoint}", "load", "app", PATHS[endpoint], workers=d.workers, cpus="0,1")
    if d.db == "mariadb":
        env = {"MYSQL_URL": dsn, "MYSQL_POOL_SIZE": str(d.pool)}
    else:
        env = {"DATABASE_URL": dsn, "PG_POOL_SIZE": str(d.pool)}
    proc = c.start(d.server, sc, cwd=d.app_dir, env=env)
    if proc is None:
        return []
    rows = []
    try:
        # Warm-up at the highest concurrency, so that the pools have grown before any run
        # (a pool opening hundreds of connections mid-run measures PostgreSQL's fork()).
        c.wrk(sc.path, max(levels), 2, timeout_s=WRK_TIMEOUT_S)
        for conns in levels:
            # A run that other processes on the machine disturbed (a compiler took CPU the
            # server, PostgreSQL or wrk did not) is run again; the least disturbed is kept.
            tries = []
            for _ in range(1 + RETRIES):
                row = run_once(d, proc.pid, sc.path, endpoint, conns, duration)
                if row is None:
                    continue
                tries.append(row)
                if row["others_cpu_cores"] <= OTHERS_MAX:
                    break
            if tries:
                row = min(tries, key=lambda r: r["others_cpu_cores"])
                row["runs"] = len(tries)
                rows.append(row)
    finally:
        c.stop(proc)
    return rows


def run_once(
    d: Deployment, pid: int, path: str, endpoint: str, conns: int, duration: int
) -> dict | None:
    # wrk leaves requests queued in the server when it stops: let them finish first, or the
    # next run's first requests wait behind them.
    drain(pid)
    wait_quiet()
    before, pg_before, machine_before = c.tree_ticks(pid), db_ticks(d.db), machine()
    wrk_before = children_cpu_s()
    t0 = time.monotonic()
    w = c.wrk(path, conns, duration, timeout_s=WRK_TIMEOUT_S)
    elapsed = time.monotonic() - t0
    server = (c.tree_ticks(pid) - before) / c.CLK_TCK / elapsed
    pg = (db_ticks(d.db) - pg_before) / c.CLK_TCK / elapsed
    load = (children_cpu_s() - wrk_before) / elapsed
    busy, total = (a - b for a, b in zip(machine(), machine_before, strict=True))
    machine_cores = busy / max(1, total) * (os.cpu_count() or 1)
    if w is None:
        return None
    # Errors are answered too (a 503 is quick): what the clients got served is the rest.
    ok = max(0, w["requests"] - w["errors"]) / max(1, w["requests"])
    row = {
        "deployment": d.name,
        "endpoint": endpoint,
        "connections": conns,
        "rps": w["rps"],
        "ok_rps": w["rps"] * ok,
        "requests": w["requests"],
        "p50_ms": w["p50_ms"],
        "p99_ms": w["p99_ms"],
        "errors": w["errors"],
        "server_cpu_cores": server,
        f"{d.db}_cpu_cores": pg,
        "wrk_cpu_cores": load,
        "others_cpu_cores": max(0.0, machine_cores - server - pg - load),
        "measured": SESSION,
        "duration_s": duration,
    }
    print(
        f"{endpoint:4} {d.name:28} c={conns:<5} {w['rps']:8,.0f} req/s "
        f"p99 {w['p99_ms']:8.1f} ms  errors {w['errors']:.0f}  CPU cores: server "
        f"{server:.2f}, {d.db} {pg:.2f}, wrk {load:.2f}, others {row['others_cpu_cores']:.2f}",
        flush=True,
    )
    return row


def children_cpu_s() -> float:
    """CPU seconds of this process's waited-for children (wrk runs as one)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def drain(pid: int, timeout_s: float = 60) -> None:
    """Waits until the server's processes stop using CPU (their queued requests are done)."""
    deadline = time.monotonic() + timeout_s
    prev = c.tree_ticks(pid)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = c.tree_ticks(pid)
        if now - prev <= 1:
            return
        prev = now


def wait_quiet(timeout_s: float = 20) -> bool:
    """Waits (up to ``timeout_s``) for a second in which the machine is at most 15 % busy, so
    that another process's burst (a compiler) does not fall into a run. False if none came."""
    deadline = time.monotonic() + timeout_s
    said = False
    while time.monotonic() < deadline:
        busy0, total0 = machine()
        time.sleep(1)
        busy1, total1 = machine()
        if (busy1 - busy0) / max(1, total1 - total0) <= 0.15:
            return True
        if not said:
            print("waiting for the machine to be quiet (another process is busy)", flush=True)
            said = True
    return False


def db_ticks(db: str) -> int:
    """CPU ticks of the database server's processes: PostgreSQL's postmaster and its
    backends, or MariaDB's one process (a thread per connection)."""
    if db == "mariadb":
        pidfile = Path(MYDATA) / "mariadbd.pid"
    else:
        pidfile = Path(PGDATA) / "postmaster.pid"
    try:
        return c.tree_ticks(int(pidfile.read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        return 0


def machine() -> tuple[int, int]:
    """Busy and total CPU ticks of the whole machine, from /proc/stat. Busy is user, nice,
    system and steal time: interrupt time (loopback TCP's softirqs) belongs to no process, so
    it is left out rather than counted as another process's."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, steal = fields[0], fields[1], fields[2], fields[7]
    return user + nice + system + steal, sum(fields[:8])


# ---- report ----


def by(rows: list[dict], endpoint: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        if r["endpoint"] == endpoint and r["deployment"] not in MARIADB:
            out.setdefault(r["deployment"], []).append(r)
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"coroutines": "-", "processes": "-.", "threads": "--"}
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    for col, endpoint in enumerate(("slow", "cpu")):
        for name, runs in by(rows, endpoint).items():
            d = DEPLOYMENTS[name]
            x = [r["connections"] for r in runs]
            style = dict(linestyle=styles[d.model], marker="o", label=name)
            axes[0][col].plot(x, [r["rps"] for r in runs], **style)
            axes[1][col].plot(x, [r["p99_ms"] for r in runs], **style)
        what = (
            "slow query: SELECT pg_sleep(0.01)"
            if endpoint == "slow"
            else "CPU-bound: ~5 ms of hashing in Python"
        )
        axes[0][col].set_title(f"{what}: throughput")
        axes[1][col].set_title(f"{what}: p99 latency")
        axes[0][col].set_ylabel("requests/s")
        axes[1][col].set_ylabel("p99 ms (log)")
        axes[1][col].set_yscale("log")
        for ax in (axes[0][col], axes[1][col]):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("concurrent connections (wrk -c)")
            ax.set_xticks(CONCURRENCY[endpoint], [str(n) for n in CONCURRENCY[endpoint]])
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(
        "juggler and peers on 2 cores: coroutines (solid), 2 processes (dash-dot), threads (dashed)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(
    rows: list[dict],
    endpoint: str,
    names: list[str] | None = None,
    levels: tuple[int, ...] | None = None,
) -> list[str]:
    """Requests/s and p99 by connections, a line per deployment (``names``: these, in this
    order, instead of the PostgreSQL ones)."""
    levels = levels or CONCURRENCY[endpoint]
    runs_of = by(rows, endpoint)
    if names is not None:
        runs_of = {
            n: [r for r in rows if r["deployment"] == n and r["endpoint"] == endpoint]
            for n in names
        }
        runs_of = {n: runs for n, runs in runs_of.items() if runs}
    lines = [
        "| deployment | " + " | ".join(f"c={n} req/s | p99 ms" for n in levels) + " | errors |",
        "|---|" + "---:|---:|" * len(levels) + "---:|",
    ]
    for name, runs in runs_of.items():
        cells = {r["connections"]: r for r in runs}
        parts = []
        for n in levels:
            r = cells.get(n)
            parts += [f"{r['rps']:,.0f}", f"{r['p99_ms']:,.0f}"] if r else ["-", "-"]
        errors = sum(r["errors"] for r in runs)
        lines.append(f"| {name} | " + " | ".join(parts) + f" | {errors:.0f} |")
    return lines


def detail(rows: list[dict]) -> list[str]:
    """Every run with where the machine's CPU went during it."""
    lines = [
        "| endpoint | deployment | connections | req/s | p50 ms | p99 ms | server cores "
        "| server CPU µs/req | database cores | wrk cores | other processes' cores | runs "
        "| session |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['endpoint']} | {r['deployment']} | {r['connections']} | {r['rps']:,.0f} "
            f"| {r['p50_ms']:,.1f} | {r['p99_ms']:,.1f} | {r['server_cpu_cores']:.2f} "
            f"| {r['server_cpu_cores'] / max(r['rps'], 1e-9) * 1e6:,.0f} "
            f"| {r.get('postgres_cpu_cores', r.get('mariadb_cpu_cores', 0)):.2f} "
            f"| {r['wrk_cpu_cores']:.2f} "
            f"| {r['others_cpu_cores']:.2f} | {r.get('runs', 1)} | {r.get('measured', '?')} |"
        )
    return lines


def peak(rows: list[dict], endpoint: str, name: str) -> float:
    return max((r["rps"] for r in by(rows, endpoint).get(name, [])), default=float("nan"))


def at(rows: list[dict], endpoint: str, name: str, conns: int, key: str) -> float:
    for r in by(rows, endpoint).get(name, []):
        if r["connections"] == conns:
            return r[key]
    return float("nan")


def best(rows: list[dict], endpoint: str, name: str) -> dict:
    """The run of ``name`` with the most requests/s."""
    runs = by(rows, endpoint).get(name) or [{"rps": float("nan"), "connections": 0}]
    return max(runs, key=lambda r: r["rps"])


def us_per_req(r: dict) -> float:
    return r.get("server_cpu_cores", float("nan")) / max(r["rps"], 1e-9) * 1e6


def explain(rows: list[dict]) -> list[str]:
    """The findings in words, with this run's figures."""
    j1, j2 = "juggler ASGI 1 worker", "juggler ASGI 2 workers"
    t8, t32 = "juggler WSGI 8 threads", "juggler WSGI 32 threads"
    g = "Gunicorn gthread 32 threads"

    def f(name: str, conns: int, key: str = "rps", endpoint: str = "slow") -> str:
        return f"{at(rows, endpoint, name, conns, key):,.0f}"

    top1, top2 = best(rows, "slow", j1), best(rows, "slow", j2)
    last1 = next((r for r in by(rows, "slow").get(j1, []) if r["connections"] == 1024), top1)
    pg_wrk = top2.get("postgres_cpu_cores", 0) + top2.get("wrk_cpu_cores", 0)
    b32, bg = best(rows, "slow", t32), best(rows, "slow", g)
    peers = " and ".join(
        f"{best(rows, 'slow', n)['rps']:,.0f} ({n})" for n in ("Uvicorn", "Granian")
    )
    return [
        f"- **Every deployment waits the same at low concurrency.** At 8 connections each one "
        f"serves about 8 / 10.5 ms = 760 req/s (juggler async {f(j1, 8)}, 8 threads "
        f"{f(t8, 8)}): the time is the query's, and neither threads nor coroutines change it.",
        f"- **Coroutines keep scaling until the worker's CPU is spent.** A request awaiting "
        f"`pg_sleep` costs the event loop nothing, so one juggler worker goes from "
        f"{f(j1, 8)} req/s at 8 connections to a peak of {top1['rps']:,.0f} at "
        f"{top1['connections']} (the waiting alone would allow connections / 10.5 ms: 6,100 "
        f"at 64). The limit is the one Python thread: at the peak "
        f"the server uses {top1.get('server_cpu_cores', 0):.2f} cores, "
        f"{us_per_req(top1):,.0f} µs per request of FastAPI, pydantic, asyncpg and juggler. "
        f"Neither the pool ({ASYNC_POOL} connections; about "
        f"{top1['rps'] * 0.0105:,.0f} queries are in flight at that rate) nor PostgreSQL "
        f"({top1.get('postgres_cpu_cores', 0):.2f} cores) is the limit. More connections "
        f"than that only queue: at 1024, p99 is {last1['p99_ms']:,.0f} ms and throughput "
        f"falls to {last1['rps']:,.0f}, because each request then costs more CPU "
        f"({us_per_req(last1):,.0f} µs: a thousand requests alive at once, most waiting for "
        f"a pooled connection). Uvicorn and Granian, on the same app, peak at {peers} and "
        f"fall the same way.",
        f"- **Threads flatten at threads / query time.** A WSGI thread is held for the whole "
        f"query, so 8 threads serve at most 8 / 10.5 ms = 760 req/s, and do: "
        f"{f(t8, 64)} at 64 connections, {f(t8, 1024)} at 1024, while p99 grows with the "
        f"queue waiting for a thread ({f(t8, 64, 'p99_ms')} ms at 64, "
        f"{f(t8, 1024, 'p99_ms')} ms at 1024). 32 threads could serve 3,050 req/s; they "
        f"reach {b32['rps']:,.0f}, short of it because each request's Python work (Flask, "
        f"psycopg: {us_per_req(b32):,.0f} µs) runs under the one GIL "
        f"({b32.get('server_cpu_cores', 0):.2f} cores). Gunicorn gthread with 32 threads "
        f"reaches {bg['rps']:,.0f}: its HTTP handling is Python too, {us_per_req(bg):,.0f} µs "
        f"per request under the same GIL, where juggler's runs in Rust outside it.",
        f"- **Processes add CPU, not waiting room.** A second worker does not change the "
        f"waiting ({f(j2, 8)} req/s at 8 connections, like one worker); it adds a second "
        f"Python thread's worth of CPU, which pays only where one worker's CPU was the limit. "
        f"On this 2-core machine there is little to add on the slow query: PostgreSQL and wrk "
        f"already take {pg_wrk:.2f} cores at the 2-worker peak, so 2 workers reach "
        f"{top2['rps']:,.0f} req/s at best against {top1['rps']:,.0f} for one: two event "
        f"loops, PostgreSQL's backends and wrk then compete for the same 2 cores. With cores "
        f"to spare, each worker adds its own CPU-bound ceiling, as the CPU-bound endpoint "
        f"shows.",
        f"- **The CPU-bound endpoint is the other half.** Hashing holds the event loop, so one "
        f"worker runs one request at a time whatever the concurrency: {f(j1, 8, endpoint='cpu')}"
        f" req/s at 8 connections, {f(j1, 256, endpoint='cpu')} at 256 (about 1 / 5 ms, "
        f"the work taking a little under 5 ms), p99 growing with the queue. Threads do no "
        f"better "
        f"({f(t32, 256, endpoint='cpu')} req/s with 32) because the GIL runs one at a time, "
        f"and their latency is worse: requests share the GIL in 5 ms slices, so all of them "
        f"finish late (p99 at 8 connections: {f(t32, 8, 'p99_ms', 'cpu')} ms with 32 threads "
        f"against {f(j1, 8, 'p99_ms', 'cpu')} ms for one event loop, which finishes them in "
        f"turn). Only a second process helps: {f(j2, 256, endpoint='cpu')} req/s with 2 "
        f"workers at 256 connections.",
    ]


def mariadb_section(rows: list[dict]) -> list[str]:
    """The aiomysql example on MariaDB, beside a control run of the asyncpg example made
    under the same load; nothing when it was not measured."""
    mine = [r for r in rows if r["deployment"] in MARIADB]
    if not mine:
        return []
    levels = tuple(sorted({r["connections"] for r in mine}))
    durations = sorted({r.get("duration_s", 0) for r in mine})
    sessions = ", ".join(sorted({r.get("measured", "?") for r in mine}))
    busiest = max(r["others_cpu_cores"] for r in mine)
    return [
        "## The same slow query on MariaDB: `examples/fastapi_aiomysql`",
        "",
        "- command: `python benches/seed/run.py --endpoints slow --connections "
        f"{','.join(map(str, levels))} --duration {durations[-1]} --deployments "
        f"'{','.join(MARIADB)}' --merge benches/seed/results.json`",
        f"- measured: {sessions}, {durations[-1]} s per run, on the same 2-core machine; "
        f"other processes took at most {busiest:.2f} cores during these runs (the `others` "
        "column of each run below), so compare these rows with each other first. The first "
        "row is the asyncpg example on PostgreSQL, measured alongside them as a control. "
        f"Versions: {c.versions()}, "
        f"aiomysql {metadata.version('aiomysql')}.",
        "- app: FastAPI with an aiomysql pool of "
        f"{ASYNC_POOL} connections per worker, opened in lifespan; `/slow` runs `SELECT "
        "SLEEP(0.01)` (10 ms in the database, as `pg_sleep(0.01)`). MariaDB 10.11 from "
        "`scripts/mariadb.sh` with `max_connections = 1000`, unpinned like PostgreSQL.",
        "",
        *table(rows, "slow", MARIADB, levels),
        "",
    ]


def report(rows: list[dict], duration: int, command: str, burst_rows: list[dict]) -> str:
    all_rows = rows
    rows = [r for r in rows if r["deployment"] not in MARIADB]
    out = [
        "# The seed's claim, measured: coroutines, threads and processes on PostgreSQL",
        "",
        "![throughput and p99 against concurrency](seed.png)",
        "",
        f"- command: `{command}` (`make bench-seed` installs the peers and wrk first)"
        + (
            "; on a machine shared with other builds, further runs (of all or some "
            "deployments, `--deployments`) can be merged in with `--merge results.json`"
            if len({r.get("measured") for r in rows}) > 1
            else ""
        ),
        f"- measured: {', '.join(sorted({r.get('measured', '?') for r in rows}))} "
        f"({len({r.get('measured') for r in rows})} session(s); with `--merge`, each point is "
        f"the least disturbed of the sessions' runs); machine: "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"versions: {c.versions()}",
        "- apps: the examples themselves. Coroutine and process deployments serve "
        "`examples/fastapi_asyncpg` (FastAPI, asyncpg pool of "
        f"{ASYNC_POOL} connections per worker); thread deployments serve `examples/flask_app` "
        f"(Flask, psycopg_pool of {WSGI_POOL} connections). PostgreSQL 15 from "
        "`scripts/postgres.sh` with `max_connections = 1000`, so neither the pool nor the "
        "database is the first limit.",
        "- endpoints: `/slow` runs `SELECT pg_sleep(0.01)` (10 ms in the database, no CPU in "
        "Python); `/cpu` runs 20,000 rounds of sha256 over a 32-byte digest in Python (about "
        "5 ms of CPU, the GIL held: small inputs are hashed without releasing it).",
        f"- method: each server on CPUs 0-1 (`taskset`), wrk `-t1` on CPU 1, PostgreSQL "
        f"unpinned: all share the machine's 2 cores, as a small real server would. Each "
        f"deployment is started once per endpoint, warmed up for 2 s at the highest concurrency "
        f"(so that its pool has grown), then "
        f"run for {duration} s at each concurrency in turn, one round. Every server logs at "
        f"warning level with no access log, keep-alive 60 s. juggler WSGI runs with its "
        f"defaults, which queue a burst like Gunicorn (measured before 2026-12 with "
        f"`--queue-size 4096`, which behaves the same up to 1024 connections). wrk counts "
        f"responses slower than {WRK_TIMEOUT_S} s as errors (timeouts) and leaves them out "
        f"of p99.",
        "",
        "## Slow query (`SELECT pg_sleep(0.01)`): requests/s and p99 ms by connections",
        "",
        *table(rows, "slow"),
        "",
        "## CPU-bound (~5 ms of hashing): requests/s and p99 ms by connections",
        "",
        *table(rows, "cpu"),
        "",
        "## What the lines show",
        "",
        *explain(rows),
        "",
        "## How to choose",
        "",
        "- Handlers that mostly wait (database, other services): async views on an async "
        "driver, and raise `--workers` only when one worker's CPU is full (its throughput stops "
        "growing with connections); a sync app needs `--threads` of at least the requests you "
        "want in flight, i.e. target req/s x wait time.",
        "- Handlers that mostly compute: `--workers` = cores; neither coroutines nor threads "
        "add throughput.",
        "",
        *mariadb_section(all_rows),
        "## Every run, and where the CPU went",
        "",
        "Cores used during each run, measured from /proc: the server's processes, "
        "PostgreSQL's, wrk's, and what the rest of the machine used (other processes; a run "
        f"where that exceeded {OTHERS_MAX} cores was run again, up to {RETRIES} more times, "
        "and the least disturbed run is kept). Raw figures: [results.json](results.json).",
        "",
        *detail(all_rows),
        *burst_section(burst_rows),
    ]
    return "\n".join(out) + "\n"


BURST_HEADING = "## A burst of WSGI requests: served or refused"


def burst_section(rows: list[dict]) -> list[str]:
    """The WSGI burst of issue 19 (``--burst``): successful requests/s, errors and p99 per
    concurrency, and each as a ratio to juggler's defaults."""
    if not rows:
        return []
    levels = CONCURRENCY["slow"]
    runs = by(rows, "slow")
    base = {r["connections"]: r for r in runs.get(BURST[0], [])}
    lines = [
        "",
        BURST_HEADING,
        "",
        f"- command: `python benches/seed/run.py --burst --duration {rows[0]['duration']}`, "
        f"measured {', '.join(sorted({r['measured'] for r in rows}))}: the slow query with "
        "`examples/flask_app` and 32 threads in one process each, the deployments one after "
        "the other in one invocation, one run of each point. The machine was shared with "
        "other builds and tests while it ran (the `others` column below: cores they took), "
        "so compare the ratios within one concurrency rather than the figures with the tables "
        "above.",
        "- ok req/s: responses other than errors per second (wrk's rate less its non-2xx "
        "responses and socket errors); errors: those non-2xx responses (503) and socket "
        "errors, timeouts (> 10 s) included; p99 of all responses, 503s included; x: ok req/s "
        "as a share of juggler's with its defaults.",
        "",
        "| connections | deployment | ok req/s | x | errors | p99 ms | others' cores |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n in levels:
        b = base.get(n)
        for name in BURST:
            r = next((r for r in runs.get(name, []) if r["connections"] == n), None)
            if r is None:
                continue
            ratio = f"{r['ok_rps'] / b['ok_rps']:.2f}" if b and b["ok_rps"] else "-"
            lines.append(
                f"| {n} | {name} | {r['ok_rps']:,.0f} | {ratio} | {r['errors']:,.0f} | "
                f"{r['p99_ms']:,.0f} | {r['others_cpu_cores']:.2f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per load run")
    parser.add_argument("--deployments", default=",".join(DEFAULT_DEPLOYMENTS))
    parser.add_argument(
        "--burst",
        action="store_true",
        help="measure the WSGI burst of issue 19 (juggler's defaults, its old --queue-size, "
        "Granian and Gunicorn on the slow query) into burst.json, then rewrite RESULTS.md",
    )
    parser.add_argument("--endpoints", default="slow,cpu")
    parser.add_argument(
        "--connections",
        help="comma-separated connection counts to run (default: each endpoint's full list)",
    )
    parser.add_argument("--output", type=Path, default=HERE, help="directory for the results")
    parser.add_argument(
        "--merge",
        type=Path,
        action="append",
        default=[],
        help="results.json of an earlier run: for each point, the run that other processes "
        "disturbed least is kept (repeatable; for a shared machine)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: redraw the plot and rewrite RESULTS.md from results.json",
    )
    args = parser.parse_args()
    if args.burst:
        measure_burst(args.output, args.duration)
        return
    if args.report_only:
        rows = json.loads((args.output / "results.json").read_text())
        rows = merge(rows, args.merge)
        (args.output / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
        write(rows, args.output, args.duration)
        return
    unknown = set(args.deployments.split(",")) - set(DEPLOYMENTS)
    if unknown:
        sys.exit(f"unknown deployment: {', '.join(sorted(unknown))}")
    # A SIGTERM unwinds like an error, so the server and PostgreSQL are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    chosen = [DEPLOYMENTS[n] for n in args.deployments.split(",")]
    urls: dict[str, str] = {}
    started: list[str] = []
    t0 = time.monotonic()
    rows: list[dict] = []
    try:
        for db in dict.fromkeys(d.db for d in chosen):
            urls[db], ours = database(db)
            if ours:
                started.append(db)
        for endpoint in args.endpoints.split(","):
            levels = CONCURRENCY[endpoint]
            if args.connections:
                levels = tuple(int(n) for n in args.connections.split(","))
            for d in chosen:
                if endpoint in d.endpoints:
                    rows += measure(d, endpoint, urls[d.db], args.duration, levels)
    finally:
        for db in started:
            script = DATABASES[db][0]
            subprocess.run(["bash", str(ROOT / "scripts" / script), "stop"], check=False)
    rows = merge(rows, args.merge)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    write(rows, args.output, args.duration)
    print(f"done in {time.monotonic() - t0:.0f} s; written to {args.output}")


def measure_burst(output: Path, duration: int) -> None:
    """The burst deployments on the slow query, each run once per concurrency (the shared
    machine cannot be waited out: the report gives ratios and the others' CPU instead)."""
    global RETRIES
    RETRIES = 0  # for this invocation only; the main runs' report keeps saying 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    dsn, started = database("postgres")
    rows: list[dict] = []
    try:
        for name in BURST:
            rows += measure(DEPLOYMENTS[name], "slow", dsn, duration, CONCURRENCY["slow"])
    finally:
        if started:
            subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "stop"], check=False)
    for r in rows:
        r["duration"] = duration
    output.mkdir(parents=True, exist_ok=True)
    (output / "burst.json").write_text(json.dumps(rows, indent=1) + "\n")
    add_burst_section(output)
    print(f"written to {output / 'burst.json'} and RESULTS.md")


def add_burst_section(output: Path) -> None:
    """Replaces the burst's section of RESULTS.md, leaving the main runs' report (and plot)
    as they were measured."""
    path = output / "RESULTS.md"
    text = path.read_text()
    head = text.split(BURST_HEADING, 1)[0].rstrip("\n")
    path.write_text(head + "\n" + "\n".join(burst_section(burst_rows(output))) + "\n")


def merge(rows: list[dict], files: list[Path]) -> list[dict]:
    """``rows`` and the rows of ``files``: for each point (endpoint, deployment, connections)
    the run in which other processes used the least CPU, in the order of ``rows``."""
    key = lambda r: (r["endpoint"], r["deployment"], r["connections"])  # noqa: E731
    chosen = {key(r): r for r in rows}
    order = [key(r) for r in rows]
    for f in files:
        for r in json.loads(f.read_text()):
            k = key(r)
            if k not in chosen:
                order.append(k)
                chosen[k] = r
            elif r["others_cpu_cores"] < chosen[k]["others_cpu_cores"]:
                chosen[k] = r
    # Keep the endpoints' and deployments' order for the tables and the plot.
    rank = {n: i for i, n in enumerate(DEPLOYMENTS)}
    order.sort(key=lambda k: (list(PATHS).index(k[0]), rank.get(k[1], 99), k[2]))
    return [chosen[k] for k in order]


def write(rows: list[dict], output: Path, duration: int) -> None:
    plot(rows, output / "seed.png")
    # The main tables' run length is their rows' (5 s, the default, for rows that predate
    # "duration_s"), not that of a later run which only added the MariaDB rows.
    main = [r for r in rows if r["deployment"] not in MARIADB]
    duration = max((r.get("duration_s", 5) for r in main), default=duration)
    command = "python benches/seed/run.py" + (f" --duration {duration}" if duration != 5 else "")
    (output / "RESULTS.md").write_text(report(rows, duration, command, burst_rows(output)))


def burst_rows(output: Path) -> list[dict]:
    path = output / "burst.json"
    return json.loads(path.read_text()) if path.exists() else []


if __name__ == "__main__":
    main()
