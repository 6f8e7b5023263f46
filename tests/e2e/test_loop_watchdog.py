"""The blocked-loop watchdog (--loop-watchdog) and admission by loop lag (--max-loop-lag),
with real handlers blocking a real worker's event loop."""

from __future__ import annotations

import re
import threading
import time
import uuid

import httpx
import pytest
from conftest import APPS

pytestmark = pytest.mark.timeout(60)

APP = APPS / "watchdog_app.py"
REPORT = "Event loop of worker \\[\\d+\\] blocked for"


def line_of(text: str) -> int:
    """The line number of the app's line containing ``text``."""
    for number, line in enumerate(APP.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {APP}")


def in_background(url: str) -> tuple[threading.Thread, dict[str, httpx.Response]]:
    got: dict[str, httpx.Response] = {}
    thread = threading.Thread(target=lambda: got.setdefault("r", httpx.get(url, timeout=20)))
    thread.start()
    return thread, got


def reports(j) -> list[str]:
    return [line for line in j.lines[j.test_start :] if re.search(REPORT, line)]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_handler_blocking_in_time_sleep_is_named_with_its_file_and_line(juggler, loop):
    j = juggler("watchdog_app:app", "--loop", loop, "--loop-watchdog", "0.2").ready()
    key = uuid.uuid4().hex
    r = httpx.get(f"{j.url}/sleep?s=0.6&key={key}", timeout=20)
    assert r.status_code == 200
    m = j.wait_for(
        rf"ERROR: .*Event loop of worker \[(\d+)\] blocked for ([\d.]+) s \(--loop-watchdog 0.2\)"
        rf" while serving GET /sleep\?s=0.6&key={key}\. The loop thread was at"
    )
    assert j.workers() == [int(m.group(1))]
    assert 0.2 <= float(m.group(2)) < 0.6
    # Down to the line inside the handler, with its source, as a traceback reads.
    line = line_of("time.sleep(seconds)")
    j.wait_for(rf'^  File ".*watchdog_app.py", line {line}, in app$')
    j.wait_for(r"^    time.sleep\(seconds\)  # blocks the event loop")
    m = j.wait_for(
        r"Event loop of worker \[\d+\] turned again after being blocked for ([\d.]+) s"
        rf" \(while serving GET /sleep\?s=0.6&key={key}\)"
    )
    assert 0.45 <= float(m.group(1)) < 3
    # Once per stall: the timer saw it waiting a dozen times more after the report.
    assert len(reports(j)) == 1


def test_a_handler_spinning_the_cpu_is_named_while_it_holds_the_gil(juggler):
    j = juggler("watchdog_app:app", "--loop", "asyncio", "--loop-watchdog", "0.2").ready()
    key = uuid.uuid4().hex
    thread, got = in_background(f"{j.url}/spin?s=1.5&key={key}")
    # Reported while the loop is still stuck, not after.
    j.wait_for(rf"blocked for [\d.]+ s \(--loop-watchdog 0.2\) while serving GET /spin.*{key}")
    assert "r" not in got
    line = line_of("while time.monotonic() < deadline:")
    j.wait_for(rf'^  File ".*watchdog_app.py", line ({line}|{line + 1}), in app$')
    thread.join(20)
    assert got["r"].status_code == 200
    j.wait_for(rf"turned again after being blocked for [\d.]+ s \(while serving GET /spin.*{key}")


def test_a_handler_stuck_in_one_c_call_holding_the_gil_is_named_at_that_call(juggler):
    # sys._current_frames() from another thread could only look once the call returned, and
    # would see the line after it; the stack is taken from the loop thread itself, at once.
    j = juggler("watchdog_app:app", "--loop", "asyncio", "--loop-watchdog", "0.1").ready()
    key = uuid.uuid4().hex
    assert httpx.get(f"{j.url}/regex?n=25&key={key}", timeout=30).status_code == 200
    j.wait_for(rf"blocked for [\d.]+ s \(--loop-watchdog 0.1\) while serving GET /regex.*{key}")
    line = line_of('re.match(r"(a+)+$"')
    j.wait_for(rf'^  File ".*watchdog_app.py", line {line}, in app$')


def test_a_healthy_app_under_load_gets_no_report(juggler):
    j = juggler("watchdog_app:app", "--loop-watchdog", "0.3").ready()
    failures: list[str] = []

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            for _ in range(300):
                r = client.get(f"{j.url}/")
                if r.status_code != 200:
                    failures.append(str(r.status_code))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures
    # A stall of our own marks the end: the first report must be about it.
    key = uuid.uuid4().hex
    assert httpx.get(f"{j.url}/sleep?s=0.8&key={key}", timeout=20).status_code == 200
    j.wait_for(rf"blocked for .* while serving GET /sleep\?s=0.8&key={key}")
    first, *_ = reports(j)
    assert key in first, first


def test_repeated_stalls_never_flood_the_log(juggler):
    j = juggler("watchdog_app:app", "--loop-watchdog", "0.05", "--no-access-log").ready()
    keys = [uuid.uuid4().hex for _ in range(8)]
    with httpx.Client(timeout=20) as client:
        for key in keys:
            assert client.get(f"{j.url}/sleep?s=0.2&key={key}").status_code == 200
    j.wait_for(f"BLOCKING {keys[-1]}")
    # The first five are reported (each once, each followed up); the rest only counted.
    for key in keys[:5]:
        j.wait_for(rf"turned again after being blocked for [\d.]+ s \(.*key={key}\)")
    logged = [line for line in j.lines[j.test_start :] if "Event loop of worker" in line]
    assert not any(key in line for line in logged for key in keys[5:]), logged
    assert len(reports(j)) == 5, logged


def test_max_loop_lag_answers_503_with_retry_after_while_the_loop_lags(juggler):
    j = juggler("watchdog_app:app", "--max-loop-lag", "100", "--loop-watchdog", "0.3").ready()
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{j.url}/").status_code == 200
    key = uuid.uuid4().hex
    thread, got = in_background(f"{j.url}/sleep?s=2&key={key}")
    # The watchdog's report says the loop has lagged 0.3 s: well past the 100 ms bound.
    j.wait_for(rf"blocked for .* while serving GET /sleep\?s=2&key={key}")
    with httpx.Client(timeout=10) as client:
        sent = time.monotonic()
        r = client.get(f"{j.url}/")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert time.monotonic() - sent < 0.5, "answered at once, not after the loop"
        assert "r" not in got
    thread.join(20)
    assert got["r"].status_code == 200
    # Once the loop turns again, the next probe brings the lag down: served again.
    j.wait_for(rf"turned again after being blocked for [\d.]+ s \(while serving .*{key}\)")
    deadline = time.monotonic() + 2
    with httpx.Client(timeout=10) as client:
        while (status := client.get(f"{j.url}/").status_code) != 200:
            assert status == 503
            assert time.monotonic() < deadline, "still refused 2 s after the loop turned"


def test_the_loop_options_say_they_do_not_watch_wsgi_calls(juggler):
    j = juggler(
        "workers_app:wsgi", "--interface", "wsgi", "--loop-watchdog", "1", "--max-loop-lag", "50"
    ).ready()
    j.wait_for(r"WARNING: .*--loop-watchdog and --max-loop-lag watch the event loop, which runs")
    assert httpx.get(f"{j.url}/").status_code == 200
