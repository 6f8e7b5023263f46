"""Side-by-side benchmark of juggler and its peers, one after another in one run.

Each server is pinned to CPU 0 and the load generator to CPU 1. CPU time per request is the
user+system time of the server's whole process tree (from /proc) over the requests completed.
ASGI scenarios (hello, fastapi, io, idle, stream, cpu, cpu-2w, hello-2w) run only the ASGI
servers (cpu and cpu-2w side by side show what a second worker process adds), WSGI scenarios
(wsgi-hello, wsgi-block) only the WSGI servers (juggler-wsgi, granian-wsgi, gunicorn-gthread,
uwsgi; each with 32 threads in one process; uwsgi-router, uWSGI's --http router in front of
the same worker, runs only when named in --servers).

usage: python benches/compare.py [--duration S] [--rounds N] [--output FILE]
                                 [--scenarios hello,fastapi,io,idle,stream,wsgi-hello,...]
                                 [--servers juggler,uvicorn,granian,granian-wsgi,...]

A full run (every scenario and every server, as `make bench` does) writes benches/RESULTS.md.
A partial run (a subset of --scenarios or --servers) only prints its tables and leaves
RESULTS.md as it is, unless --output FILE names where to write them; the file is replaced
whole, so --output benches/RESULTS.md with a subset drops the other scenarios' sections.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
BIN = Path(sys.executable).parent
HYPERLIMIT = HERE / "hyperlimit" / "target" / "release" / "hyperlimit"
PORT = 18080
CLK_TCK = os.sysconf("SC_CLK_TCK")
IDLE_CONNECTIONS = 10_000
STREAM_MIB = 1024
THREADS = 32  # WSGI servers: threads running the app, in one process


def juggler(*extra: str) -> Callable[[str], list[str]]:
    return lambda m: [
        str(BIN / "juggler"),
        f"{m}:app",
        "--port",
        str(PORT),
        "--no-access-log",
        "--log-level",
        "warning",
        "--timeout-keep-alive",
        "60",
        *extra,
    ]


def granian(*extra: str) -> Callable[[str], list[str]]:
    return lambda m: [
        str(BIN / "granian"),
        "--interface",
        "asgi",
        "--port",
        str(PORT),
        "--workers",
        "1",
        "--log-level",
        "warning",
        "--no-ws",
        *extra,
        f"{m}:app",
    ]


def juggler_wsgi(m: str) -> list[str]:
    return juggler("--interface", "wsgi", "--threads", str(THREADS))(m)


def granian_wsgi(m: str) -> list[str]:
    # Granian's access log is off by default (--access-log / --no-access-log).
    return [
        str(BIN / "granian"),
        "--interface",
        "wsgi",
        "--port",
        str(PORT),
        "--workers",
        "1",
        "--blocking-threads",
        str(THREADS),
        "--log-level",
        "warning",
        f"{m}:app",
    ]


def gunicorn_gthread(m: str) -> list[str]:
    # An arbiter process and one worker; gunicorn's access log is off by default.
    return [
        str(BIN / "gunicorn"),
        "-k",
        "gthread",
        "--threads",
        str(THREADS),
        "-w",
        "1",
        "--keep-alive",
        "60",
        "--log-level",
        "warning",
        "-b",
        f"127.0.0.1:{PORT}",
        f"{m}:app",
    ]


def uwsgi(m: str) -> list[str]:
    # --http11-socket is uWSGI's keep-alive HTTP socket (--http-socket closes every connection
    # after one response; --http-keepalive belongs to the separate --http router process). No
    # --master, so it is one process. A thread keeps its connection until the client closes it
    # or it idles for --socket-timeout (here 60 s, the others' keep-alive), so more connections
    # than threads wait in the accept queue: the harness reports those in the errors column.
    return [
        str(BIN / "uwsgi"),
        "--http11-socket",
        f"127.0.0.1:{PORT}",
        "--processes",
        "1",
        "--threads",
        str(THREADS),
        "--disable-logging",
        "--socket-timeout",
        "60",
        "--need-app",
        "--module",
        f"{m}:app",
    ]


def uwsgi_router(m: str) -> list[str]:
    # Opt-in: uWSGI's --http router (a gateway process that holds every client connection
    # and forwards requests over the uwsgi protocol) in front of one worker, under a master.
    return [
        str(BIN / "uwsgi"),
        "--http",
        f"127.0.0.1:{PORT}",
        "--http-keepalive",
        "--master",
        "--processes",
        "1",
        "--threads",
        str(THREADS),
        "--disable-logging",
        "--need-app",
        "--module",
        f"{m}:app",
    ]


SERVERS: dict[str, Callable[[str], list[str]]] = {
    "juggler": juggler(),
    "juggler-asyncio": juggler("--loop", "asyncio"),
    "uvicorn": lambda m: [
        str(BIN / "uvicorn"),
        f"{m}:app",
        "--port",
        str(PORT),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--timeout-keep-alive",
        "60",
    ],
    "granian": granian(),
    "granian-uvloop": granian("--loop", "uvloop"),
    "limit-hyper": lambda m: [str(HYPERLIMIT), str(PORT)],
    "juggler-wsgi": juggler_wsgi,
    "granian-wsgi": granian_wsgi,
    "gunicorn-gthread": gunicorn_gthread,
    "uwsgi": uwsgi,
    "uwsgi-router": uwsgi_router,
}
WSGI_SERVERS = ("juggler-wsgi", "granian-wsgi", "gunicorn-gthread", "uwsgi", "uwsgi-router")
OPT_IN = ("uwsgi-router",)  # only run when named in --servers
PEERS = {
    "asgi": ("uvicorn", "granian", "granian-uvloop"),
    "wsgi": ("granian-wsgi", "gunicorn-gthread", "uwsgi"),
}


def interface(server: str) -> str:
    return "wsgi" if server in WSGI_SERVERS else "asgi"


@dataclass
class Scenario:
    name: str
    kind: str  # "load", "idle" or "stream"
    module: str
    path: str = "/"
    connections: int = 64
    about: str = ""
    wait_s: float = 0.0  # per-request wait in the app, for the Little's-law limit
    interface: str = "asgi"  # which servers run it
    threads: int = 0  # when set, Little's law is against threads ÷ wait, not connections
    workers: int = 1  # worker processes, through each server's own flag
    cpus: str = "0"  # the CPUs the server is pinned to (taskset -c)


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("hello", "load", "asgi_hello", "/", 64, "raw ASGI hello world, 64 connections"),
        Scenario(
            "fastapi",
            "load",
            "fastapi_items",
            "/items/42?q=x",
            64,
            "FastAPI GET /items/{id} with a Pydantic response model, 64 connections",
        ),
        Scenario(
            "io",
            "load",
            "asgi_io",
            "/",
            512,
            "raw ASGI awaiting asyncio.sleep(0.01), 512 connections",
            wait_s=0.01,
        ),
        Scenario(
            "idle",
            "idle",
            "asgi_hello",
            "/",
            16,
            f"{IDLE_CONNECTIONS:,} idle keep-alive connections held while wrk -c16 runs",
        ),
        Scenario(
            "stream",
            "stream",
            "asgi_stream",
            "/",
            1,
            f"{STREAM_MIB} MiB response body and {STREAM_MIB} MiB request body, one at a time",
        ),
        Scenario(
            "cpu",
            "load",
            "asgi_cpu",
            "/",
            16,
            "raw ASGI doing ~5 ms of pure-Python work per request, 1 worker, 16 connections, "
            "server on CPUs 0-1",
            cpus="0,1",
        ),
        Scenario(
            "cpu-2w",
            "load",
            "asgi_cpu",
            "/",
            16,
            "the same with 2 worker processes",
            workers=2,
            cpus="0,1",
        ),
        Scenario(
            "hello-2w",
            "load",
            "asgi_hello",
            "/",
            64,
            "raw ASGI hello world, 2 worker processes, 64 connections, server on CPUs 0-1 "
            "(wrk shares CPU 1)",
            workers=2,
            cpus="0,1",
        ),
        Scenario(
            "wsgi-hello",
            "load",
            "wsgi_hello",
            "/",
            64,
            f"WSGI hello world, 64 connections, {THREADS} threads",
            interface="wsgi",
        ),
        Scenario(
            "wsgi-block",
            "load",
            "wsgi_block",
            "/",
            64,
            f"WSGI app blocking in time.sleep(0.01), 64 connections, {THREADS} threads "
            f"(thread limit {THREADS / 0.01:,.0f} req/s)",
            wait_s=0.01,
            interface="wsgi",
            threads=THREADS,
        ),
    )
}


@dataclass
class Result:
    scenario: str
    server: str
    metrics: dict[str, float] = field(default_factory=dict)
    note: str = ""


# ---- process helpers ----


def tree_pids(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def tree_ticks(pid: int) -> int:
    return sum(own_ticks(p) for p in tree_pids(pid))


def own_ticks(pid: int) -> int:
    """User+system clock ticks of one process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (FileNotFoundError, ProcessLookupError):
        return 0


def tree_kib(pid: int, key: str) -> int:
    """Sum of a /proc/PID/status field (VmRSS, VmHWM) over the process tree, in KiB."""
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def established(port: int) -> int:
    """Server-side TCP connections in ESTABLISHED state on ``port`` (IPv4 and IPv6)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def accept_queue(port: int) -> int:
    """Connections waiting in the accept queue of the listening socket on ``port``."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += int(fields[4].split(":")[1], 16)
    return count


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wait_port(deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def with_workers(server: str, cmd: list[str], workers: int) -> list[str]:
    """``cmd`` running ``workers`` worker processes, through the server's own flag."""
    if workers == 1 or server == "limit-hyper":
        return cmd
    for flag in ("--workers", "-w", "--processes"):
        if flag in cmd:
            i = cmd.index(flag)
            return [*cmd[: i + 1], str(workers), *cmd[i + 2 :]]
    # juggler and uvicorn run one worker unless told.
    return [*cmd, "--workers", str(workers)]


def start(
    server: str, sc: Scenario, cwd: Path = APPS, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes] | None:
    """Starts ``server`` on ``sc.module`` found in ``cwd``, with ``env`` added to ours."""
    cmd = with_workers(server, SERVERS[server](sc.module), sc.workers)
    # The port opens when the first process binds; let every worker come up.
    return launch(server, cmd, sc.cpus, settle=3 if sc.workers > 1 else 0, cwd=cwd, env=env)


def launch(
    name: str,
    cmd: list[str],
    cpus: str = "0",
    settle: float = 0,
    cwd: Path = APPS,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes] | None:
    """Starts a server pinned to ``cpus`` and waits for its port; None if it never opens."""
    proc = subprocess.Popen(
        ["taskset", "-c", cpus, *cmd],
        cwd=cwd,
        env={**os.environ, **env} if env else None,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=raise_fd_limit,
    )
    if wait_port(time.monotonic() + 30):
        time.sleep(settle)
        return proc
    stop(proc)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    print(f"{name}: did not start: {err[-300:]}", file=sys.stderr)
    return None


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# ---- load generation ----


def to_ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(
    path: str,
    conns: int,
    duration: int,
    midway: Callable[[], None] | None = None,
    base: str = f"http://127.0.0.1:{PORT}",
    timeout_s: int = 2,
) -> dict[str, float] | None:
    """Runs wrk; ``midway`` is called halfway through the run (to look at the server).
    Responses slower than ``timeout_s`` count as timeouts (in errors), not in the latencies."""
    cmd = [
        "taskset",
        "-c",
        "1",
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{duration}s",
        f"--timeout={timeout_s}s",
        "--latency",
        f"{base}{path}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if midway:
        try:
            proc.wait(duration / 2)
        except subprocess.TimeoutExpired:
            midway()
    try:
        out, _ = proc.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    reqs = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (reqs and rps and p50 and p99):
        print(f"could not parse wrk output:\n{out}", file=sys.stderr)
        return None
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": int(reqs.group(1)),
        "rps": float(rps.group(1)),
        "p50_ms": to_ms(p50.group(1)),
        "p99_ms": to_ms(p99.group(1)),
        "errors": (int(bad.group(1)) if bad else 0)
        + (sum(int(x) for x in errs.groups()) if errs else 0),
    }


def run_load(sc: Scenario, server: str, proc: subprocess.Popen[bytes], duration: int) -> Result:
    wrk(sc.path, min(sc.connections, 64), 1)  # warm-up
    queued: list[int] = []
    before, root_before = tree_ticks(proc.pid), own_ticks(proc.pid)
    w = wrk(sc.path, sc.connections, duration, lambda: queued.append(accept_queue(PORT)))
    after, root_after = tree_ticks(proc.pid), own_ticks(proc.pid)
    r = Result(sc.name, server)
    if w:
        r.metrics = {k: w[k] for k in ("rps", "p50_ms", "p99_ms", "errors")}
        r.metrics["cpu_us"] = (after - before) / CLK_TCK * 1e6 / max(1, w["requests"])
        # The first process alone: the supervisor, where a server has one.
        r.metrics["root_cpu_us"] = (
            (root_after - root_before) / CLK_TCK * 1e6 / max(1, w["requests"])
        )
        if sc.wait_s:
            r.metrics["littles_law"] = w["rps"] / ((sc.threads or sc.connections) / sc.wait_s)
    if queued and queued[0]:
        # wrk counts no error for a connection that is never accepted, so say it here.
        r.note = f"({queued[0]} of {sc.connections} connections unaccepted midway)"
    return r


def run_idle(sc: Scenario, server: str, proc: subprocess.Popen[bytes], duration: int) -> Result:
    wrk(sc.path, 16, 1)  # warm-up, so the baseline includes a served request
    base_kib = tree_kib(proc.pid, "VmRSS")
    client = subprocess.Popen(
        [
            "taskset",
            "-c",
            "1",
            sys.executable,
            str(HERE / "idle_client.py"),
            str(PORT),
            str(IDLE_CONNECTIONS),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=raise_fd_limit,
    )
    r = Result(sc.name, server)
    try:
        line = client.stdout.readline() if client.stdout else ""
        if not line.startswith("READY"):
            r.note = "idle client failed"
            return r
        # Count what the server still holds open, not what the client thinks it holds.
        held = established(PORT)
        held_kib = tree_kib(proc.pid, "VmRSS")
        w = wrk(sc.path, sc.connections, duration)
        r.metrics = {
            "held": held,
            "rss_base_mib": base_kib / 1024,
            "rss_held_mib": held_kib / 1024,
            "kib_per_conn": (held_kib - base_kib) / max(1, held),
        }
        if w:
            r.metrics.update({"rps": w["rps"], "p99_ms": w["p99_ms"], "errors": w["errors"]})
    finally:
        if client.stdin:
            client.stdin.close()
        client.wait(60)
    return r


def run_stream(sc: Scenario, server: str, proc: subprocess.Popen[bytes], duration: int) -> Result:
    size = STREAM_MIB << 20
    base_kib = tree_kib(proc.pid, "VmRSS")
    r = Result(sc.name, server)
    t0 = time.perf_counter()
    got = 0
    with socket.create_connection(("127.0.0.1", PORT)) as s:
        s.sendall(f"GET /download?mib={STREAM_MIB} HTTP/1.1\r\nHost: b\r\n\r\n".encode())
        buf = bytearray(1 << 20)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(65536)
        got = len(head.split(b"\r\n\r\n", 1)[1])
        while got < size:
            n = s.recv_into(buf)
            if not n:
                break
            got += n
    down = time.perf_counter() - t0
    block = b"u" * (1 << 20)
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", PORT)) as s:
        s.sendall(f"POST /upload HTTP/1.1\r\nHost: b\r\nContent-Length: {size}\r\n\r\n".encode())
        for _ in range(STREAM_MIB):
            s.sendall(block)
        answer = b""
        while not answer.endswith(str(size).encode()):
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    up = time.perf_counter() - t0
    peak_kib = tree_kib(proc.pid, "VmHWM")
    r.metrics = {
        "down_gbps": got / down / 1e9,
        "up_gbps": size / up / 1e9,
        "rss_base_mib": base_kib / 1024,
        "peak_rss_mib": peak_kib / 1024,
    }
    if got != size or not answer.endswith(str(size).encode()):
        r.note = f"incomplete: down {got} of {size}, upload answer {answer[-40:]!r}"
    return r


RUNNERS = {"load": run_load, "idle": run_idle, "stream": run_stream}


# ---- report ----


def versions() -> str:
    out = []
    for pkg in (
        "juggler",
        "uvicorn",
        "uvloop",
        "httptools",
        "granian",
        "hypercorn",
        "websockets",
        "gunicorn",
        "uwsgi",
        "fastapi",
        "pydantic",
    ):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg} (not installed)")
    return ", ".join(out)


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def load_table(results: list[Result], scenario: str) -> list[str]:
    rows = [r for r in results if r.scenario == scenario and r.metrics]
    peers = [r for r in rows if r.server in PEERS[SCENARIOS[scenario].interface]]
    best_rps = max((r.metrics["rps"] for r in peers), default=None)
    best_cpu = min((r.metrics["cpu_us"] for r in peers), default=None)
    limit = next((r for r in rows if r.server == "limit-hyper"), None)
    lines = [
        f"### {scenario}: {SCENARIOS[scenario].about}",
        "",
        "| server | req/s | p50 ms | p99 ms | CPU µs/req | req/s ÷ best peer "
        "| CPU ÷ best peer | CPU ÷ limit | Little's law | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        m = r.metrics
        lines.append(
            f"| {r.server} | {m['rps']:,.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} "
            f"| {m['cpu_us']:.1f} | {fmt(m['rps'] / best_rps if best_rps else None)} "
            f"| {fmt(m['cpu_us'] / best_cpu if best_cpu else None)} "
            f"| {fmt(m['cpu_us'] / limit.metrics['cpu_us'] if limit else None)} "
            f"| {fmt(m.get('littles_law'))} | {m['errors']:.0f} {r.note}".rstrip()
            + " |"
        )
    return lines


def idle_table(results: list[Result]) -> list[str]:
    lines = [
        f"### idle: {SCENARIOS['idle'].about}",
        "",
        "| server | held | RSS before MiB | RSS held MiB | KiB/conn | req/s meanwhile "
        "| p99 ms meanwhile | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.scenario == "idle":
            m = r.metrics
            lines.append(
                f"| {r.server} | {m.get('held', 0):,.0f} | {fmt(m.get('rss_base_mib'), '.1f')} "
                f"| {fmt(m.get('rss_held_mib'), '.1f')} | {fmt(m.get('kib_per_conn'), '.1f')} "
                f"| {fmt(m.get('rps'), ',.0f')} | {fmt(m.get('p99_ms'))} "
                f"| {fmt(m.get('errors'), '.0f')} {r.note} |"
            )
    return lines


def stream_table(results: list[Result]) -> list[str]:
    lines = [
        f"### stream: {SCENARIOS['stream'].about}",
        "",
        "| server | download GB/s | upload GB/s | RSS before MiB | peak RSS MiB | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if r.scenario == "stream":
            m = r.metrics
            lines.append(
                f"| {r.server} | {fmt(m.get('down_gbps'))} | {fmt(m.get('up_gbps'))} "
                f"| {fmt(m.get('rss_base_mib'), '.1f')} | {fmt(m.get('peak_rss_mib'), '.1f')} "
                f"| {r.note or '-'} |"
            )
    return lines


def scaling_table(results: list[Result]) -> list[str]:
    """Throughput with 2 workers against 1 on the CPU-bound endpoint, per server."""
    one = {r.server: r.metrics for r in results if r.scenario == "cpu" and r.metrics}
    two = {r.server: r.metrics for r in results if r.scenario == "cpu-2w" and r.metrics}
    lines = [
        "### scaling: CPU-bound endpoint, 1 worker against 2",
        "",
        "| server | req/s 1 worker | req/s 2 workers | 2 ÷ 1 | CPU µs/req 2 workers "
        "| first process CPU µs/req, 2 workers |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for server in [s for s in one if s in two]:
        a, b = one[server], two[server]
        lines.append(
            f"| {server} | {a['rps']:,.0f} | {b['rps']:,.0f} | {b['rps'] / a['rps']:.2f} "
            f"| {b['cpu_us']:,.0f} | {b['root_cpu_us']:.1f} |"
        )
    return lines


def report(results: list[Result], duration: int, rounds: int) -> str:
    out = [
        "# juggler benchmark results",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}",
        f"- versions: {versions()}",
        f"- method: each server pinned to CPU 0 (to CPUs 0-1 in the cpu, cpu-2w and hello-2w "
        f"scenarios, with its own --workers flag), the client (wrk -t1, or a Python client) "
        f"pinned to CPU 1; {duration} s per load run after a 1 s warm-up, {rounds} interleaved "
        f"rounds per load scenario, each server's median run (by CPU µs/req) shown. CPU µs/req is "
        f"user+system "
        f"time of the server's process tree over the requests wrk completed. 'best peer' is the "
        f"best of {', '.join(PEERS['asgi'])} for ASGI, of {', '.join(PEERS['wsgi'])} for WSGI; "
        f"'limit' is a pure-Rust hyper server (benches/hyperlimit). Little's law: req/s ÷ "
        f"(connections ÷ wait) for ASGI, req/s ÷ (threads ÷ wait) for WSGI. Every server logs "
        f"at warning level with no access log, keep-alive 60 s where it has a setting.",
        f"- WSGI servers, {THREADS} threads in one process each: juggler-wsgi `--interface wsgi "
        f"--threads {THREADS}`; granian-wsgi `--interface wsgi --blocking-threads {THREADS} "
        f"--workers 1` (one runtime thread, the default); gunicorn-gthread `-k gthread --threads "
        f"{THREADS} -w 1` (an arbiter and one worker process, both counted); uwsgi "
        f"`--http11-socket --processes 1 --threads {THREADS} --disable-logging --socket-timeout "
        f"60`, no `--master`. `--http11-socket` is uWSGI's keep-alive HTTP socket: plain "
        f"`--http-socket` closes each connection after one response, and `--http-keepalive` "
        f"only applies to the separate `--http` router process. uWSGI's threads each keep one "
        f"connection, so with more connections than threads the rest wait unaccepted: the "
        f"errors column says how many were in the accept queue halfway through a run.",
        "- command: `make bench` (`python benches/compare.py`); where the time goes and what "
        "the missed targets would need: [PROFILE.md](PROFILE.md)",
        "",
    ]
    for name in dict.fromkeys(r.scenario for r in results):
        kind = SCENARIOS[name].kind
        out += (
            load_table(results, name)
            if kind == "load"
            else idle_table(results)
            if kind == "idle"
            else stream_table(results)
        )
        out.append("")
    if {"cpu", "cpu-2w"} <= {r.scenario for r in results}:
        out += [*scaling_table(results), ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="runs per load scenario")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--servers", default=",".join(s for s in SERVERS if s not in OPT_IN))
    parser.add_argument(
        "--output",
        type=Path,
        help="file to write the report to; default: benches/RESULTS.md for a full run, "
        "none (print only) for a partial one",
    )
    args = parser.parse_args()
    partial = args.scenarios != parser.get_default("scenarios") or (
        args.servers != parser.get_default("servers")
    )
    output = args.output or (None if partial else HERE / "RESULTS.md")
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    unknown |= set(args.servers.split(",")) - set(SERVERS)
    if unknown:
        sys.exit(f"unknown scenario or server: {', '.join(sorted(unknown))}")
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("benches need wrk and taskset (apt-get install wrk util-linux)")
    results: list[Result] = []
    for name in args.scenarios.split(","):
        sc = SCENARIOS[name]
        servers = [
            s
            for s in args.servers.split(",")
            if (s != "limit-hyper" and interface(s) == sc.interface)
            or (s == "limit-hyper" and name == "hello" and HYPERLIMIT.exists())
        ]
        # Load scenarios run in interleaved rounds and keep each server's median run, so that
        # a noisy minute on a shared machine does not decide a ratio.
        rounds = args.rounds if sc.kind == "load" else 1
        runs: dict[str, list[Result]] = {s: [] for s in servers}
        for _ in range(rounds):
            for server in servers:
                proc = start(server, sc)
                if proc is None:
                    continue
                try:
                    r = RUNNERS[sc.kind](sc, server, proc, args.duration)
                finally:
                    stop(proc)
                runs[server].append(r)
                shown = ", ".join(f"{k}={v:,.2f}" for k, v in r.metrics.items())
                print(f"{name:10} {server:16} {shown} {r.note}", flush=True)
        for server in servers:
            done = sorted(runs[server], key=lambda r: r.metrics.get("cpu_us", 0.0))
            if done:
                results.append(done[len(done) // 2])
    text = report(results, args.duration, args.rounds)
    if output:
        output.write_text(text)
    print("\n" + text)
    print(f"\nwritten to {output}" if output else "\npartial run: not written (see --output)")


if __name__ == "__main__":
    main()
