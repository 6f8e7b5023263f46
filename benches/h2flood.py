"""HTTP/2 floods against juggler, Granian and Hypercorn (issue 19): what each flood costs the
serving process, and how a second client fares meanwhile.

Each server runs the same tiny ASGI app (benches/apps/asgi_flood.py: hello, and /hold, which
never reads its body nor answers) in one worker, with access logs off and --log-level warning,
on 127.0.0.1, over h2c (HTTP/2 by prior knowledge) and over TLS (ALPN h2). A fresh server
is started for each flood.
The floods are those of tests/e2e/h2flood.py, from one raw connection that never reads (a
4 KiB receive buffer), each bounded: at most --limit-mib MiB of frames, or until the server
closes the connection, or until it stops reading for --stall seconds.

Measured, for each server and flood:
  growth    peak VmRSS of the serving process (the one holding the connection) during the
            flood, minus its VmRSS just before (sampled every 20 ms);
  sent      MiB of flood frames the server's socket took, and how the flood ended;
  closed    whether the server closed the flooding connection (read once the flood is over),
            and the GOAWAY code it sent, if any;
  cpu       user+system seconds of the serving process during the flood;
  second    a second client (httpx, HTTP/2) sends --requests requests one after another once
            the flood has begun: median and max latency, and how many failed.

usage: python benches/h2flood.py [--servers juggler,granian,hypercorn] [--floods ping,...]
                                 [--transports h2c,tls] [--limit-mib N] [--stall S]
                                 [--requests N] [--output FILE]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))

import httpx  # noqa: E402
import trustme  # noqa: E402
from h2flood import FLOODS, Flooder, RssWatch, cpu_ticks, serving_pid  # noqa: E402

BIN = Path(sys.executable).parent
APP = "asgi_flood:app"
CLK_TCK = os.sysconf("SC_CLK_TCK")
GOAWAY_NAMES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 3: "FLOW_CONTROL_ERROR", 11: "CALM"}


@dataclass
class Tls:
    cert: str
    key: str
    ca: trustme.CA

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


def juggler(port: int, tls: Tls | None) -> list[str]:
    cmd = [str(BIN / "juggler"), APP, "--port", str(port), "--no-access-log"]
    if tls:
        cmd += ["--ssl-certfile", tls.cert, "--ssl-keyfile", tls.key]
    return [*cmd, "--log-level", "warning", "--workers", "1"]


def granian(port: int, tls: Tls | None) -> list[str]:
    # Granian's access log is off by default; --http auto serves h2c by prior knowledge.
    cmd = [str(BIN / "granian"), "--interface", "asgi", "--port", str(port), "--workers", "1"]
    if tls:
        cmd += ["--ssl-certificate", tls.cert, "--ssl-keyfile", tls.key]
    return [*cmd, "--http", "auto", "--log-level", "warning", APP]


def hypercorn(port: int, tls: Tls | None) -> list[str]:
    # Hypercorn's access log is off unless --access-logfile is given.
    cmd = [str(BIN / "hypercorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    if tls:
        cmd += ["--certfile", tls.cert, "--keyfile", tls.key]
    return [*cmd, "--log-level", "warning", APP]


SERVERS: dict[str, Callable[[int, Tls | None], list[str]]] = {
    "juggler": juggler,
    "granian": granian,
    "hypercorn": hypercorn,
}


@dataclass
class Row:
    server: str
    flood: str
    transport: str
    growth_mib: float
    sent_mib: float
    ended: str
    closed: str
    cpu_s: float
    median_ms: float
    max_ms: float
    failed: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)  # nothing to wait on but the port itself
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stops the server and its workers (they share its process group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def run_one(server: str, flood: str, tls: Tls | None, args: argparse.Namespace) -> Row:
    port = free_port()
    proc = subprocess.Popen(
        SERVERS[server](port, tls),
        cwd=HERE / "apps",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_listening(proc, port)
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
        latencies: list[float] = []
        failed = 0
        verify: ssl.SSLContext | bool = tls.context() if tls else True
        with httpx.Client(http1=False, http2=True, timeout=30, verify=verify) as second:
            second.get(url).raise_for_status()
            limit = args.limit_mib << 20
            flooder = Flooder(port, FLOODS[flood], limit, args.stall, tls and tls.context())
            pid = serving_pid(proc.pid, port, flooder.sock.getsockname()[1])
            ticks = cpu_ticks(pid)
            with RssWatch(pid) as rss:
                flooder.start()
                flooder.started.wait()
                for _ in range(args.requests):
                    t0 = time.perf_counter()
                    try:
                        second.get(url).raise_for_status()
                        latencies.append(time.perf_counter() - t0)
                    except httpx.HTTPError:
                        failed += 1
                outcome = flooder.join(600)
            cpu = (cpu_ticks(pid) - ticks) / CLK_TCK
        outcome = flooder.finish(wait=args.stall)
        closed = "yes" if outcome.closed else "no"
        if outcome.goaway is not None:
            closed += f" (GOAWAY {GOAWAY_NAMES.get(outcome.goaway, outcome.goaway)})"
        return Row(
            server,
            flood,
            "tls" if tls else "h2c",
            rss.growth_mib,
            outcome.sent / (1 << 20),
            outcome.ended,
            closed,
            cpu,
            statistics.median(latencies) * 1000 if latencies else float("nan"),
            max(latencies) * 1000 if latencies else float("nan"),
            failed,
        )
    finally:
        stop(proc)


def versions() -> str:
    out = []
    for name in ("juggler", "granian", "hypercorn", "h2"):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def table(rows: list[Row]) -> str:
    lines = [
        "| flood | over | server | RSS growth (MiB) | sent (MiB), ended | closed | CPU (s) "
        "| second client median / max (ms) | failed |",
        "|---|---|---|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.flood} | {r.transport} | {r.server} | {r.growth_mib:.1f} "
            f"| {r.sent_mib:.1f}, {r.ended} "
            f"| {r.closed} | {r.cpu_s:.2f} | {r.median_ms:.1f} / {r.max_ms:.1f} | {r.failed} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--floods", default=",".join(FLOODS))
    p.add_argument("--transports", default="h2c,tls", help="h2c, tls (ALPN h2) or both")
    p.add_argument("--limit-mib", type=int, default=32)
    p.add_argument("--stall", type=float, default=2.0)
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--output", type=Path)
    args = p.parse_args()
    servers = args.servers.split(",")
    floods = args.floods.split(",")
    for name in servers:
        if name not in SERVERS:
            p.error(f"unknown server {name!r}; known: {', '.join(SERVERS)}")
    for name in floods:
        if name not in FLOODS:
            p.error(f"unknown flood {name!r}; known: {', '.join(FLOODS)}")
    transports = args.transports.split(",")
    if not set(transports) <= {"h2c", "tls"}:
        p.error("--transports: h2c, tls or both")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        tls = Tls(f"{d}/cert.pem", f"{d}/key.pem", ca)
        cert.cert_chain_pems[0].write_to_path(tls.cert)
        cert.private_key_pem.write_to_path(tls.key)
        for transport in transports:
            for flood in floods:
                for server in servers:
                    row = run_one(server, flood, tls if transport == "tls" else None, args)
                    print(table([row]).splitlines()[-1], flush=True)
                    rows.append(row)
    command = "python benches/h2flood.py " + " ".join(sys.argv[1:])
    floods_doc = "\n".join(f"- `{f}`: {FLOODS[f].about}" for f in floods)
    report = f"""# HTTP/2 floods: juggler, Granian, Hypercorn

Produced by `{command.strip()}` on {datetime.date.today()} ({platform.machine()},
{os.cpu_count()} CPUs shared with other work; {versions()}).

One worker each, access logs off, on 127.0.0.1 over h2c (prior knowledge) or TLS (ALPN h2;
a certificate made for the run by trustme), the app `benches/apps/asgi_flood.py`, a fresh
server per flood. The flooding connection never reads (4 KiB receive buffer) and sends
at most {args.limit_mib} MiB of frames; it ends early when the server closes it ("closed") or
stops reading for {args.stall} s ("stalled"). "closed" is read once the flood is over. The
second client sends {args.requests} requests one after another from the flood's start.

{floods_doc}

{table(rows)}
"""
    print(report)
    if args.output:
        args.output.write_text(report)


if __name__ == "__main__":
    main()
