"""Side-by-side load test of juggler and its peers on one pinned core.

Each server runs pinned to CPU 0 and wrk to CPU 1, one after the other in the same run.
Reported per server: requests/s, p50 and p99 latency, and server CPU time per request
(user+system of the whole process tree, from /proc), plus ratios to juggler.

usage: python benches/compare.py [--duration S] [--scenarios hello,io] [--servers ...]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
BIN = Path(sys.executable).parent
PORT = 18080
CLK_TCK = os.sysconf("SC_CLK_TCK")

SCENARIOS = {
    # name: (app module, path, connections, description)
    "hello": ("asgi_hello", "/", 64, "raw ASGI hello world, 64 connections"),
    "io": ("asgi_io", "/", 512, "raw ASGI awaiting asyncio.sleep(0.01), 512 connections"),
}

SERVERS = {
    "juggler": lambda m: [
        str(BIN / "juggler"),
        f"{m}:app",
        "--port",
        str(PORT),
        "--no-access-log",
        "--log-level",
        "warning",
    ],
    "juggler-asyncio": lambda m: [
        str(BIN / "juggler"),
        f"{m}:app",
        "--port",
        str(PORT),
        "--no-access-log",
        "--log-level",
        "warning",
        "--loop",
        "asyncio",
    ],
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
    ],
    "granian": lambda m: [
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
        f"{m}:app",
    ],
    "granian-uvloop": lambda m: [
        str(BIN / "granian"),
        "--interface",
        "asgi",
        "--port",
        str(PORT),
        "--workers",
        "1",
        "--loop",
        "uvloop",
        "--log-level",
        "warning",
        "--no-ws",
        f"{m}:app",
    ],
}


@dataclass
class Result:
    scenario: str
    server: str
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    errors: str


def tree_ticks(pid: int) -> int:
    """user+system CPU ticks of a process and all its descendants."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def wait_port(deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def to_ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(path: str, conns: int, duration: float) -> str:
    cmd = [
        "taskset",
        "-c",
        "1",
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{int(duration)}s",
        "--latency",
        f"http://127.0.0.1:{PORT}{path}",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30).stdout


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_one(scenario: str, server: str, duration: float) -> Result | None:
    module, path, conns, _ = SCENARIOS[scenario]
    cmd = ["taskset", "-c", "0", *SERVERS[server](module)]
    proc = subprocess.Popen(
        cmd, cwd=APPS, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        if not wait_port(time.monotonic() + 20):
            err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else ""
            print(f"{server}: did not start {err[-300:]}", file=sys.stderr)
            return None
        wrk(path, min(conns, 64), 1)  # warm-up
        before = tree_ticks(proc.pid)
        out = wrk(path, conns, duration)
        after = tree_ticks(proc.pid)
    finally:
        stop(proc)
    reqs = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (reqs and rps and p50 and p99):
        print(f"{server}: could not parse wrk output:\n{out}", file=sys.stderr)
        return None
    n = int(reqs.group(1))
    errors = " ".join(
        line.strip() for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line
    )
    cpu_us = (after - before) / CLK_TCK * 1e6 / n if n else float("nan")
    return Result(
        scenario,
        server,
        float(rps.group(1)),
        to_ms(p50.group(1)),
        to_ms(p99.group(1)),
        cpu_us,
        errors,
    )


def versions() -> str:
    out = []
    for pkg in ("juggler", "uvicorn", "uvloop", "httptools", "granian"):
        try:
            from importlib.metadata import version

            out.append(f"{pkg} {version(pkg)}")
        except Exception:
            out.append(f"{pkg} (not installed)")
    return ", ".join(out)


def table(results: list[Result]) -> str:
    lines = [
        "| scenario | server | req/s | p50 ms | p99 ms | CPU µs/req | req/s vs juggler "
        "| CPU vs juggler | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        ours = next(
            (x for x in results if x.scenario == r.scenario and x.server == "juggler"), None
        )
        rps_ratio = f"{r.rps / ours.rps:.2f}" if ours else "-"
        cpu_ratio = f"{r.cpu_us / ours.cpu_us:.2f}" if ours and ours.cpu_us else "-"
        lines.append(
            f"| {r.scenario} | {r.server} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {r.cpu_us:.1f} | {rps_ratio} | {cpu_ratio} | {r.errors or '-'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--scenarios", default="hello,io")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("benches need wrk and taskset (apt-get install wrk util-linux)")
    results = []
    for scenario in args.scenarios.split(","):
        for server in args.servers.split(","):
            r = run_one(scenario, server, args.duration)
            if r:
                print(
                    f"{r.scenario:6} {r.server:16} {r.rps:10,.0f} req/s  p99 {r.p99_ms:7.2f} ms"
                    f"  {r.cpu_us:6.1f} µs/req",
                    flush=True,
                )
                results.append(r)
    header = (
        f"# juggler benchmark results\n\n"
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n"
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}\n"
        f"- versions: {versions()}\n"
        f"- method: server pinned to CPU 0, wrk (1 thread) pinned to CPU 1, {args.duration:g} s "
        f"per run after a 1 s warm-up; CPU µs/req is user+system time of the server's process "
        f"tree divided by the requests wrk completed.\n"
        f"- command: `make bench` (`python benches/compare.py`)\n\n"
        + "\n".join(f"- {k}: {v[3]}" for k, v in SCENARIOS.items())
        + "\n\n"
    )
    text = header + table(results) + "\n"
    args.output.write_text(text)
    print("\n" + table(results))


if __name__ == "__main__":
    main()
