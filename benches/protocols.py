"""WebSockets, HTTP/2 and TLS side by side: juggler and its peers, one after another, one run.

Scenarios:
  ws-echo   many WebSockets each echoing small text messages (client: benches/wsload, Rust)
            against Uvicorn (its websockets and websockets-sansio implementations) and Granian;
  h2c       HTTP/2 with prior knowledge, hello app, h2load, against Granian and Hypercorn;
  h2-tls    HTTP/2 over TLS (ALPN), same load, against Granian and Hypercorn;
  https1    HTTP/1.1 over TLS, wrk, against Uvicorn and Granian.

As in compare.py, the server is pinned to CPU 0 and the client to CPU 1, access logs are off
for every server, and CPU time per request (or message) is the server's whole process tree's
user+system time over what was completed. Certificates are made for the run (trustme).

usage: python benches/protocols.py [--duration S] [--rounds N] [--scenarios ws-echo,...]
                                   [--output FILE]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import compare
from compare import BIN, CLK_TCK, PORT, stop, tree_ticks

HERE = Path(__file__).resolve().parent
WSLOAD = HERE / "wsload" / "target" / "release" / "wsload"
WS_CONNECTIONS = 50
H2_CONNECTIONS, H2_STREAMS = 10, 10
HTTPS_CONNECTIONS = 50


@dataclass
class Tls:
    cert: str
    key: str
    ca: str


def juggler(m: str, tls: Tls | None) -> list[str]:
    cmd = [str(BIN / "juggler"), f"{m}:app", "--port", str(PORT), "--no-access-log"]
    cmd += ["--log-level", "warning", "--timeout-keep-alive", "60"]
    if tls:
        cmd += ["--ssl-certfile", tls.cert, "--ssl-keyfile", tls.key]
    return cmd


def uvicorn(ws: str) -> Callable[[str, Tls | None], list[str]]:
    def command(m: str, tls: Tls | None) -> list[str]:
        # Pings stay at their default (20 s) everywhere: Uvicorn's --ws-ping-interval 0 makes
        # the websockets implementation ping without pause.
        cmd = [str(BIN / "uvicorn"), f"{m}:app", "--port", str(PORT), "--loop", "uvloop"]
        cmd += ["--http", "httptools", "--ws", ws]
        cmd += ["--no-access-log", "--log-level", "warning", "--timeout-keep-alive", "60"]
        if tls:
            cmd += ["--ssl-certfile", tls.cert, "--ssl-keyfile", tls.key]
        return cmd

    return command


def granian(m: str, tls: Tls | None) -> list[str]:
    cmd = [str(BIN / "granian"), "--interface", "asgi", "--port", str(PORT), "--workers", "1"]
    cmd += ["--log-level", "warning", "--http", "auto"]
    if tls:
        cmd += ["--ssl-certificate", tls.cert, "--ssl-keyfile", tls.key]
    return [*cmd, f"{m}:app"]


def hypercorn(m: str, tls: Tls | None) -> list[str]:
    cmd = [str(BIN / "hypercorn"), "--bind", f"127.0.0.1:{PORT}", "--log-level", "warning"]
    cmd += ["--worker-class", "uvloop", "--keep-alive", "60"]
    if tls:
        cmd += ["--certfile", tls.cert, "--keyfile", tls.key]
    return [*cmd, f"{m}:app"]


SERVERS: dict[str, Callable[[str, Tls | None], list[str]]] = {
    "juggler": juggler,
    "uvicorn": uvicorn("websockets"),
    "uvicorn-sansio": uvicorn("websockets-sansio"),
    "granian": granian,
    "hypercorn": hypercorn,
}


@dataclass
class Scenario:
    name: str
    about: str
    servers: tuple[str, ...]
    module: str
    tls: bool
    unit: str  # what is counted: "request" or "message"


SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "ws-echo",
            f"{WS_CONNECTIONS} WebSockets, each echoing a 32-byte text message and waiting "
            "for it (benches/wsload)",
            ("juggler", "uvicorn", "uvicorn-sansio", "granian"),
            "asgi_ws_echo",
            False,
            "message",
        ),
        Scenario(
            "h2c",
            f"HTTP/2 by prior knowledge, hello app, h2load -c{H2_CONNECTIONS} -m{H2_STREAMS}",
            ("juggler", "granian", "hypercorn"),
            "asgi_hello",
            False,
            "request",
        ),
        Scenario(
            "h2-tls",
            f"HTTP/2 over TLS (ALPN), hello app, h2load -c{H2_CONNECTIONS} -m{H2_STREAMS}",
            ("juggler", "granian", "hypercorn"),
            "asgi_hello",
            True,
            "request",
        ),
        Scenario(
            "https1",
            f"HTTP/1.1 over TLS, hello app, wrk -t1 -c{HTTPS_CONNECTIONS}",
            ("juggler", "uvicorn", "granian"),
            "asgi_hello",
            True,
            "request",
        ),
    )
}


def client(cmd: list[str], timeout: float) -> str:
    out = subprocess.run(
        ["taskset", "-c", "1", *cmd], capture_output=True, text=True, timeout=timeout
    )
    return out.stdout + out.stderr


def load(sc: Scenario, tls: Tls | None, duration: int) -> dict[str, float] | None:
    """Runs the scenario's client; what it completed, its rate and latencies, and errors."""
    scheme = "https" if tls else "http"
    if sc.name == "ws-echo":
        out = client(
            [str(WSLOAD), f"ws://127.0.0.1:{PORT}/", str(WS_CONNECTIONS), str(duration)],
            duration + 60,
        )
        kv = dict(re.findall(r"^(\w+)=([\d.]+)$", out, re.M))
        if "messages" not in kv:
            print(f"could not parse wsload output:\n{out}", file=sys.stderr)
            return None
        return {
            "count": float(kv["messages"]),
            "rate": float(kv["rate"]),
            "p99_ms": float(kv["p99_us"]) / 1000,
            "errors": float(kv["errors"]),
        }
    if sc.name in ("h2c", "h2-tls"):
        out = client(
            [
                "h2load",
                "-D",
                str(duration),
                "-c",
                str(H2_CONNECTIONS),
                "-m",
                str(H2_STREAMS),
                "-t",
                "1",
                f"{scheme}://127.0.0.1:{PORT}/",
            ],
            duration + 60,
        )
        done = re.search(
            r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, "
            r"(\d+) failed, (\d+) errored",
            out,
        )
        rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
        proto = re.search(r"Application protocol: (\S+)", out)
        if not (done and rate) or (proto and proto.group(1) not in ("h2", "h2c")):
            print(f"could not parse h2load output (or not h2):\n{out}", file=sys.stderr)
            return None
        return {
            "count": float(done.group(2)),
            "rate": float(rate.group(1)),
            "p99_ms": float("nan"),
            "errors": float(done.group(3)) + float(done.group(4)),
        }
    w = compare.wrk("/", HTTPS_CONNECTIONS, duration, base=f"https://127.0.0.1:{PORT}")
    if not w:
        return None
    return {"count": w["requests"], "rate": w["rps"], "p99_ms": w["p99_ms"], "errors": w["errors"]}


def run(sc: Scenario, server: str, tls: Tls | None, duration: int) -> dict[str, float] | None:
    proc = compare.launch(server, SERVERS[server](sc.module, tls if sc.tls else None))
    if proc is None:
        return None
    try:
        load(sc, tls if sc.tls else None, 1)  # warm-up
        before = tree_ticks(proc.pid)
        got = load(sc, tls if sc.tls else None, duration)
        after = tree_ticks(proc.pid)
    finally:
        stop(proc)
    if not got or not got["count"]:
        print(f"{sc.name} {server}: nothing completed ({got})", file=sys.stderr)
        return None
    got["cpu_us"] = (after - before) / CLK_TCK * 1e6 / got["count"]
    return got


def certificates(directory: str) -> Tls:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = Tls(f"{directory}/cert.pem", f"{directory}/key.pem", f"{directory}/ca.pem")
    cert.cert_chain_pems[0].write_to_path(paths.cert)
    cert.private_key_pem.write_to_path(paths.key)
    ca.cert_pem.write_to_path(paths.ca)
    return paths


def table(sc: Scenario, results: dict[str, dict[str, float]]) -> list[str]:
    base = results.get("juggler")
    lines = [
        f"### {sc.name}: {sc.about}",
        "",
        f"| server | {sc.unit}s/s | CPU µs/{sc.unit} | p99 ms | errors "
        "| juggler's rate ÷ | juggler's CPU ÷ |",
        "|---|---|---|---|---|---|---|",
    ]
    for server, m in results.items():
        rate_ratio = f"{base['rate'] / m['rate']:.2f}" if base and server != "juggler" else ""
        cpu_ratio = f"{base['cpu_us'] / m['cpu_us']:.2f}" if base and server != "juggler" else ""
        p99 = "" if m["p99_ms"] != m["p99_ms"] else f"{m['p99_ms']:.2f}"
        lines.append(
            f"| {server} | {m['rate']:.0f} | {m['cpu_us']:.1f} | {p99} | {m['errors']:.0f} "
            f"| {rate_ratio} | {cpu_ratio} |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="runs per server; median shown")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--output", help="also write the tables to this file")
    args = parser.parse_args()
    if not WSLOAD.exists():
        sys.exit(
            "build the client: cargo build --release --manifest-path benches/wsload/Cargo.toml"
        )
    lines = [
        "# Protocols: WebSockets, HTTP/2, TLS",
        "",
        f"`python benches/protocols.py --duration {args.duration} --rounds {args.rounds}`, "
        f"on {compare.platform.node() or 'this machine'}: {compare.versions()}. Server on CPU 0, "
        "client on CPU 1, access logs off, one worker each; each server's median round (by CPU "
        "per unit) is shown. Ratios are juggler's over the peer's: a rate ratio above 1 and a "
        "CPU ratio below 1 favour juggler.",
        "",
    ]
    with tempfile.TemporaryDirectory() as d:
        tls = certificates(d)
        for name in args.scenarios.split(","):
            sc = SCENARIOS[name]
            results: dict[str, dict[str, float]] = {}
            for server in sc.servers:
                rounds = [
                    r for _ in range(args.rounds) if (r := run(sc, server, tls, args.duration))
                ]
                if rounds:
                    results[server] = sorted(rounds, key=lambda r: r["cpu_us"])[len(rounds) // 2]
                    print(f"{name} {server}: {results[server]}", flush=True)
            lines += table(sc, results)
    text = "\n".join(lines)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
