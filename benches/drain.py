"""Requests lost in a restart: 16 clients, each opening a fresh connection per request (as a
proxy's pool does), against a 50 ms handler, while the server is told to stop (SIGTERM) or to
reload (SIGHUP).

Each attempt ends one of three ways:
- answered: a status line came back;
- refused: the connection was refused (the port is closed: a proxy retries elsewhere, fine);
- lost: the connection was accepted by the kernel, then reset or closed without an answer, or
  left unanswered for 10 s.

A stop round runs the clients for 1 s, sends SIGTERM, and lets each client go on until it is
refused (at most 30 s). A reload round sends SIGHUP after 1 s, goes on for 3 s, then stops
the clients before it stops the server (what happens then is not counted).

usage: python benches/drain.py [--rounds N] [--servers NAME,...] [--output FILE]
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
PORT = 18290
CLIENTS = 16
REQUEST = b"GET / HTTP/1.1\r\nHost: drain\r\nConnection: close\r\n\r\n"
ANSWER_TIMEOUT = 10.0
ROUND_LIMIT = 30.0
WARM_UP = 1.0
RELOAD_WINDOW = 3.0


def juggler(*extra: str, wsgi: bool = False) -> list[str]:
    return [
        str(BIN / "juggler"),
        "slow50:wsgi_app" if wsgi else "slow50:app",
        "--app-dir",
        str(HERE / "apps"),
        "--port",
        str(PORT),
        "--no-access-log",
        "--log-level",
        "warning",
        *(("--interface", "wsgi", "--threads", "32") if wsgi else ()),
        *extra,
    ]


def uvicorn() -> list[str]:
    return [
        str(BIN / "uvicorn"),
        "slow50:app",
        "--app-dir",
        str(HERE / "apps"),
        "--port",
        str(PORT),
        "--workers",
        "2",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def granian() -> list[str]:
    return [
        str(BIN / "granian"),
        "--interface",
        "asgi",
        "--port",
        str(PORT),
        "--workers",
        "2",
        "--log-level",
        "warning",
        "--working-dir",
        str(HERE / "apps"),
        "slow50:app",
    ]


def hypercorn() -> list[str]:
    return [
        str(BIN / "hypercorn"),
        "--bind",
        f"127.0.0.1:{PORT}",
        "--workers",
        "2",
        "--root-path",
        "",
        "--log-level",
        "warning",
        "slow50:app",
    ]


def gunicorn() -> list[str]:
    return [
        str(BIN / "gunicorn"),
        "-k",
        "gthread",
        "--threads",
        "32",
        "-w",
        "2",
        "-b",
        f"127.0.0.1:{PORT}",
        "--log-level",
        "warning",
        "--chdir",
        str(HERE / "apps"),
        "slow50:wsgi_app",
    ]


@dataclass(frozen=True)
class Case:
    name: str
    command: Callable[[], list[str]]
    signal: signal.Signals = signal.SIGTERM
    #: Peers are installed by `make bench`; juggler always is.
    peer: bool = False


CASES: tuple[Case, ...] = (
    Case("juggler asgi 1w", lambda: juggler("--workers", "1")),
    Case("juggler asgi 2w", lambda: juggler("--workers", "2")),
    Case("juggler asgi 2w reuse-port", lambda: juggler("--workers", "2", "--reuse-port")),
    Case("juggler wsgi 1w", lambda: juggler("--workers", "1", wsgi=True)),
    Case("juggler wsgi 2w", lambda: juggler("--workers", "2", wsgi=True)),
    Case("juggler asgi 2w SIGHUP", lambda: juggler("--workers", "2"), signal.SIGHUP),
    Case("juggler wsgi 2w SIGHUP", lambda: juggler("--workers", "2", wsgi=True), signal.SIGHUP),
    Case("uvicorn 2w", uvicorn, peer=True),
    Case("granian 2w", granian, peer=True),
    Case("hypercorn 2w", hypercorn, peer=True),
    Case("gunicorn gthread 2w", gunicorn, peer=True),
)


@dataclass
class Tally:
    answered: int = 0
    refused: int = 0
    lost: int = 0
    why_lost: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str, why: str = "") -> None:
        with self.lock:
            setattr(self, outcome, getattr(self, outcome) + 1)
            if why:
                self.why_lost[why] = self.why_lost.get(why, 0) + 1


def attempt() -> tuple[str, str]:
    """One request on a fresh connection: (outcome, why it was lost)."""
    try:
        sock = socket.create_connection(("127.0.0.1", PORT), timeout=ANSWER_TIMEOUT)
    except ConnectionRefusedError:
        return "refused", ""
    except OSError as exc:
        return "lost", f"connect: {errno.errorcode.get(exc.errno or 0, exc)}"
    with sock:
        try:
            sock.sendall(REQUEST)
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    return "lost", "closed unanswered"
                data += chunk
        except ConnectionResetError:
            return "lost", "reset"
        except BrokenPipeError:
            return "lost", "broken pipe"
        except TimeoutError:
            return "lost", "no answer in 10 s"
        except OSError as exc:
            return "lost", errno.errorcode.get(exc.errno or 0, str(exc))
    return ("answered", "") if data.startswith(b"HTTP/1.1 ") else ("lost", "garbage")


def wait_ready(proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before serving")
        if attempt()[0] == "answered":
            return
        time.sleep(0.1)
    raise RuntimeError("the server did not answer within 30 s")


def one_round(case: Case) -> Tally:
    proc = subprocess.Popen(
        case.command(),
        cwd=HERE / "apps",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    tally = Tally()
    stop = threading.Event()
    try:
        wait_ready(proc, time.monotonic() + 30)

        def client() -> None:
            deadline = time.monotonic() + ROUND_LIMIT
            while not stop.is_set() and time.monotonic() < deadline:
                outcome, why = attempt()
                tally.add(outcome, why)
                if outcome == "refused" and case.signal == signal.SIGTERM:
                    return

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(WARM_UP)
        proc.send_signal(case.signal)
        if case.signal == signal.SIGHUP:
            time.sleep(RELOAD_WINDOW)
            stop.set()
        for t in threads:
            t.join()
    finally:
        stop.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--servers", default="", help="comma-separated case names (substrings)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]
    rows = []
    for case in CASES:
        if wanted and not any(w in case.name for w in wanted):
            continue
        if not Path(case.command()[0]).exists():
            print(f"{case.name}: not installed, skipped", file=sys.stderr)
            continue
        rounds = []
        for n in range(args.rounds):
            t = one_round(case)
            rounds.append(t)
            print(
                f"{case.name} round {n + 1}: answered {t.answered}, refused {t.refused}, "
                f"lost {t.lost} {t.why_lost or ''}",
                file=sys.stderr,
            )
        lost = [t.lost for t in rounds]
        why: dict[str, int] = {}
        for t in rounds:
            for k, v in t.why_lost.items():
                why[k] = why.get(k, 0) + v
        rows.append(
            f"| {case.name} | {sum(t.answered for t in rounds)} | "
            f"{sum(t.refused for t in rounds)} | {' / '.join(map(str, lost))} | "
            f"{', '.join(f'{k}: {v}' for k, v in sorted(why.items())) or '-'} |"
        )
    table = "\n".join(
        [
            f"| server | answered ({args.rounds} rounds) | refused | lost per round | how lost |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    if args.output:
        args.output.write_text(
            "# Requests lost in a restart\n\n"
            "`python benches/drain.py` (see its docstring): 16 clients with a fresh connection"
            " per request against a 50 ms handler; SIGTERM (or SIGHUP) after 1 s. *Refused* is"
            " fine (the port was closed: a proxy retries elsewhere); *lost* means accepted by"
            " the kernel, then reset or closed unanswered.\n\n" + table + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
