"""--max-worker-memory: a worker whose resident memory passes the limit is replaced
gracefully (the new one first, then the old one drains), with no request failing."""

from __future__ import annotations

import os
import re
import threading
import time

import httpx
import pytest
from conftest import Juggler
from test_metrics import METRICS_LINE, scrape, until

pytestmark = pytest.mark.timeout(90)

MIB = 1024 * 1024
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
LIMIT_MIB = 96
#: Each /leak keeps this much.
LEAK_MIB = 8


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


def restarts(samples) -> dict[str, float]:
    return {ls["reason"]: v for ls, v in samples.all("juggler_worker_restarts_total")}


def wait_until(predicate, timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Load:
    """Plain requests, each on a new connection, on a thread until stopped (bounded)."""

    def __init__(self, url: str, limit: int = 5000) -> None:
        self.url, self.limit = url, limit
        self.pids: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # No keep-alive: a connection left idle on a draining worker is closed by it, which
        # a client without retries would report as a failure that is not the server's.
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=self.url, limits=limits, timeout=10) as client:
            for _ in range(self.limit):
                if self._stop.is_set():
                    return
                try:
                    r = client.get("/")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if r.status_code == 200:
                    self.pids.append(int(r.text))
                else:
                    self.failures.append(f"status {r.status_code}: {r.text}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive()


@pytest.mark.parametrize("app", ["leaky_app:app", "leaky_app:wsgi"])
def test_a_worker_over_the_limit_is_replaced_with_no_failed_request(juggler, app) -> None:
    j: Juggler = juggler(
        app, "--max-worker-memory", str(LIMIT_MIB), "--metrics-bind", "127.0.0.1:0"
    ).ready()
    url = j.wait_for(METRICS_LINE).group(1)
    assert restarts(scrape(url))["memory"] == 0
    (old,) = j.workers()
    assert rss(old) < (LIMIT_MIB - 2 * LEAK_MIB) * MIB, "the limit must be above a fresh worker"
    load = Load(j.url)
    leaks = 0
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=j.url, limits=limits, timeout=10) as client:
        # Grow the worker just past the limit, then stop: the supervisor's next sample
        # (about a second later) must see it.
        while rss(old) <= LIMIT_MIB * MIB:
            leaks += 1
            assert leaks <= 2 * LIMIT_MIB // LEAK_MIB, "the leak does not show in the RSS"
            r = client.get("/leak", params={"mib": LEAK_MIB})
            assert r.status_code == 200 and int(r.text) == old
    m = j.wait_for(
        rf"Worker \[{old}\] uses ([\d.]+) MiB of memory \(RSS\), over --max-worker-memory"
        rf" {LIMIT_MIB} MiB; replacing it"
    )
    assert float(m.group(1)) >= LIMIT_MIB
    j.wait_for(rf"Worker \[{old}\] stopped \(exit code 0\)")
    (new,) = j.workers()
    assert new != old
    # The new worker got ready before the old one was told to stop: the old one's "Shutting
    # down" (the only one: the new worker serves on) comes after the new one's "started".
    lines = j.output.splitlines()
    over = next(i for i, line in enumerate(lines) if f"Worker [{old}] uses" in line)
    started = next(i for i, line in enumerate(lines) if f"Worker [{new}] started" in line)
    draining = [i for i, line in enumerate(lines) if line.endswith("Shutting down")]
    assert len(draining) == 1 and over < started < draining[0], j.output
    samples = until(url, lambda s: restarts(s)["memory"] == 1)
    assert restarts(samples)["died"] == 0, "replaced on purpose, not dead"
    # Requests go on to the new worker; none failed while the old one was replaced.
    wait_until(lambda: load.pids and load.pids[-1] == new, what="the new worker serving")
    load.stop()
    assert load.failures == []
    assert old in load.pids and new in load.pids
    over_lines = re.findall(r"Worker \[(\d+)\] uses .* over --max-worker-memory", j.output)
    assert over_lines == [str(old)], "only the leaking worker, once"
    assert j.stop() == 0
